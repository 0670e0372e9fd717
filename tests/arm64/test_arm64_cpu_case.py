"""verify-arm64 --cpu takes a QEMU CPU model in any case, as a profile's qemu_cpu (and every choice) does.

'--cpu MAX' was refused ("unknown QEMU aarch64 CPU model 'MAX'; expected one of ..., max, ...") while a profile's
``qemu_cpu: MAX`` was taken. A property after the model (',sve=off') is passed on as written.
"""

from __future__ import annotations

import pytest

from deploytool.arm64.verify import VerifyConfig
from deploytool.errors import ConfigError


def test_cpu_models_in_any_case_are_their_own_names(tiny_onnx):
    config = VerifyConfig(models=(tiny_onnx(),), cpus=("Cortex-A72", " MAX,sve=off", "max,sve=off", "neoverse-n1"))
    assert config.cpus == ("cortex-a72", "max,sve=off", "neoverse-n1")


@pytest.mark.parametrize("cpu", ["cortex-a99", "max,sve", ""])
def test_an_unknown_cpu_model_is_still_refused(tiny_onnx, cpu):
    with pytest.raises(ConfigError, match=r"^cpu: unknown QEMU aarch64 CPU model"):
        VerifyConfig(models=(tiny_onnx(),), cpus=(cpu,))
