"""Device profiles: what a target device is (cores, ISA, peak compute, EPs) and what it must meet.

See :mod:`deploytool.profiles.schema` for the YAML schema (version 1) and
:mod:`deploytool.profiles.loader` for where profiles are found.
"""

from deploytool.profiles.host import HostOptions
from deploytool.profiles.loader import (
    BUILTIN_PROFILE_DIR,
    list_profiles,
    load_profile,
    load_profile_file,
    profile_names,
)
from deploytool.profiles.schema import (
    QEMU_CPUS,
    SCHEMA_VERSION,
    Arch,
    Budgets,
    Compute,
    CpuCluster,
    EPChoice,
    ExecutionProvider,
    IsaFeature,
    NpuSpec,
    Precision,
    Profile,
    parse_profile,
)

__all__ = [
    "BUILTIN_PROFILE_DIR",
    "QEMU_CPUS",
    "SCHEMA_VERSION",
    "Arch",
    "Budgets",
    "Compute",
    "CpuCluster",
    "EPChoice",
    "ExecutionProvider",
    "HostOptions",
    "IsaFeature",
    "NpuSpec",
    "Precision",
    "Profile",
    "list_profiles",
    "load_profile",
    "load_profile_file",
    "parse_profile",
    "profile_names",
]
