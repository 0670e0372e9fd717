"""Moved to :mod:`deploytool.runtime.inputs` (the verification gate and the benchmark share it); this
name stays for passes/base.py, bench/runner.py, bench/cost_model.py and tests until they import it there."""

from deploytool.runtime.inputs import (
    DEFAULT_VOCAB,
    InputPlan,
    InputSpec,
    make_feeds,
    plan_inputs,
    plan_inputs_proto,
)

__all__ = ["InputPlan", "InputSpec", "DEFAULT_VOCAB", "plan_inputs", "plan_inputs_proto", "make_feeds"]
