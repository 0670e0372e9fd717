"""Plain-text views of device profiles (for ``deploytool profiles``)."""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from deploytool.profiles.schema import Profile

__all__ = ["fp16_statement", "profile_text", "profiles_table"]


def fp16_statement(profile: Profile) -> str:
    """Whether the profile's cores compute fp16 natively (the host may differ; see the report)."""
    if profile.fp16_arithmetic:
        return (f"{profile.core} has fp16 arithmetic: ONNX Runtime runs fp16 MatMul/Gemm natively "
                "(MLAS fp16 GEMM accumulates in fp16)")
    return (f"{profile.core} has no fp16 arithmetic: ONNX Runtime inserts casts and computes fp16 models in fp32 "
            "(smaller file, no speed-up)")


def profiles_table(profiles: Sequence[Profile]) -> str:
    cols = ("name", "soc", "core", "threads", "EPs (preference)", "fp16", "qemu", "p90 budgets ms")
    rows = []
    for p in profiles:
        budgets = ", ".join(f"{s}:{v:g}" for s, v in p.budgets.p90_latency_ms.items()) or "-"
        rows.append((p.name, p.soc, p.core, str(p.threads), " > ".join(ep.name.lower() for ep in p.execution_providers),
                     "yes" if p.fp16_arithmetic else "no", p.qemu_cpu or "-", budgets))
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    line = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(cols), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])


def profile_text(profile: Profile) -> str:
    d = profile.to_dict()
    text = yaml.safe_dump(d, sort_keys=False, width=100, allow_unicode=True)
    return f"# {profile.path or profile.name}\n{text}# {fp16_statement(profile)}"
