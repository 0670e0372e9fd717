"""deploytool.quiet_logs: other libraries' records kept quiet without changing logging's configuration for good,
also when two threads do it at once."""

from __future__ import annotations

import logging
import threading

from deploytool.quiet_logs import held_level, quiet_logs


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_quiet_logs_drops_this_threads_records_only_and_changes_nothing():
    lg = logging.getLogger("deploytool-test.noisy")
    collect = _Collect()
    lg.addHandler(collect)
    lg.setLevel(logging.INFO)
    try:
        with quiet_logs(["deploytool-test.noisy"]):
            lg.warning("mine")
            lg.error("my error")
            other = threading.Thread(target=lambda: lg.warning("other thread"))
            other.start()
            other.join()
            assert lg.level == logging.INFO  # no level changed: nothing to restore, nothing to race over
        lg.warning("after")
        assert collect.messages == ["my error", "other thread", "after"]
        assert lg.filters == []
    finally:
        lg.removeHandler(collect)
        lg.setLevel(logging.NOTSET)


def test_quiet_root_gives_logging_warning_no_reason_to_configure_the_root_logger(monkeypatch):
    """``logging.warning`` on a root logger without handlers runs basicConfig(): a handler the user's own
    basicConfig() then kept (it does nothing when the root has one)."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a fresh program (pytest gives the root its own handlers)
    with quiet_logs(root=True):
        logging.warning("consider pre-processing")
        logging.error("a real problem")  # not dropped: reaches the NullHandler here, as it would any handler
    assert root.handlers == [] and root.filters == []


def test_overlapping_holders_restore_the_level_the_first_found():
    """Two threads each saving and restoring a level: the later one saved the earlier one's temporary level and
    restored it last, leaving transformers at ERROR for good. Exits here in the order that did that."""
    lg = logging.getLogger("deploytool-test.held")
    lg.setLevel(logging.WARNING)
    try:
        first, second = held_level("deploytool-test.held", logging.ERROR), held_level("deploytool-test.held",
                                                                                     logging.ERROR)
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert lg.level == logging.ERROR  # still held by the second
        second.__exit__(None, None, None)
        assert lg.level == logging.WARNING
    finally:
        lg.setLevel(logging.NOTSET)


def test_overlapping_stdout_holders_put_back_the_programs_stdout():
    """contextlib.redirect_stdout in two threads at once (two exports loading their models): the later one saved
    the earlier one's StringIO and put it back last; every later print() of the program went nowhere."""
    import sys

    from deploytool.quiet_logs import held_stdout

    mine = sys.stdout
    first, second = held_stdout(), held_stdout()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert sys.stdout is not mine  # still held by the second
    second.__exit__(None, None, None)
    assert sys.stdout is mine


def test_held_stdout_takes_the_holding_threads_prints_only():
    """redirect_stdout took every thread's prints while a model loaded (a program's other threads printed into a
    StringIO that was thrown away)."""
    import io
    import sys
    import threading

    from deploytool.quiet_logs import held_stdout

    mine, caught, mine_before = io.StringIO(), io.StringIO(), sys.stdout
    sys.stdout = mine
    try:
        with held_stdout(caught):
            print("held")
            other = threading.Thread(target=lambda: print("other thread"))
            other.start()
            other.join()
        print("after")
    finally:
        sys.stdout = mine_before
    assert caught.getvalue() == "held\n"
    assert mine.getvalue() == "other thread\nafter\n"
