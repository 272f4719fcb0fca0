"""Ray tests run only inside a network namespace whose one interface is loopback.

Ray advertises the machine's interface address even when told 127.0.0.1 (Ray issue
#59110), so a test cluster on a shared machine would send traffic off loopback. A module
named ``test_ray_*.py`` is therefore collected, outside such a namespace, as one item that
re-runs the module inside ``unshare -n`` (``unshare -rn`` for a non-root user) after
``ip link set lo up``. Where no namespace can be made, the item is skipped with the reason,
except under ``CI=true``, where it fails: CI must run the Ray tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RAY_MODULE_PREFIX = "test_ray_"
MODULE_TIMEOUT_S = 1800  # one Ray module, cluster start included: a hang guard (a loaded box is slow)
INSIDE = "REFLECTIVE_SEARCH_RAY_NAMESPACE"  # set for the inner run: it never wraps itself again


def loopback_only() -> bool:
    """Whether this process's network namespace has no interface but ``lo``.

    (Asked of the kernel for this process; /sys/class/net shows the namespace that mounted /sys.)
    """
    import socket

    return [name for _, name in socket.if_nameindex()] == ["lo"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unshare_prefix() -> list[str]:
    """The command that enters a fresh network namespace (a user namespace too when not root)."""
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]


def namespace_refusal() -> str | None:
    """Why a loopback-only namespace cannot be made here (None: it can)."""
    try:
        probe = subprocess.run([*unshare_prefix(), "ip", "link", "set", "lo", "up"], capture_output=True, text=True,
                               timeout=300)  # a hang guard: a refusal here skips the Ray tests
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{' '.join(unshare_prefix())} cannot run ({exc})"
    if probe.returncode != 0:
        return f"{' '.join(unshare_prefix())} was refused ({probe.stderr.strip().splitlines()[-1:] or probe.returncode})"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip a Ray test that cannot run, or fail it under CI."""
    if in_ci():
        pytest.fail(f"CI must run the Ray tests, but {reason}", pytrace=False)
    pytest.skip(reason)


class RayModuleInNamespace(pytest.File):
    """A Ray test module seen from outside the namespace: one item that runs it inside."""

    def collect(self):
        yield RayModuleRun.from_parent(self, name="in_loopback_namespace")


class RayModuleRun(pytest.Item):
    def runtest(self) -> None:
        refusal = namespace_refusal()
        if refusal is not None:
            skip_or_fail(f"the Ray tests need a loopback-only network namespace and {refusal}; "
                         "run them as root (see docs/getting-started.md, Tests)")
        seed = self.config.getoption("randomly_seed", None)  # the inner run keeps the outer test order's seed
        order = f" --randomly-seed={seed}" if isinstance(seed, int) else ""
        inner = f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider{order} {self.path}"
        run = subprocess.run([*unshare_prefix(), "bash", "-c", inner], cwd=self.config.rootpath, capture_output=True,
                             text=True, timeout=MODULE_TIMEOUT_S, env={**os.environ, INSIDE: "1"})
        self.add_report_section("call", "inner pytest", run.stdout[-20000:] + run.stderr[-5000:])
        if run.returncode != 0:
            raise RayModuleFailed(run.stdout[-20000:] + run.stderr[-5000:])

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, RayModuleFailed):
            return f"{self.path.name} failed inside its loopback-only namespace:\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.path.name} (in a loopback-only network namespace)"


class RayModuleFailed(Exception):
    """The inner pytest run of a Ray module failed (its output is the message)."""


def collect_ray_module(module_path: Path, parent):
    """conftest's hook: outside the namespace a Ray module becomes one namespace run."""
    if not module_path.name.startswith(RAY_MODULE_PREFIX) or loopback_only():
        return None
    if os.environ.get(INSIDE):  # the namespace was made, yet has more than lo: never recurse
        raise RuntimeError(f"{module_path.name}: the namespace made for the Ray tests has interfaces besides lo")
    return RayModuleInNamespace.from_parent(parent, path=module_path)


def require_ray() -> None:
    """Module level: skip (fail under CI) a Ray module when Ray is not installed."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        reason = "Ray is not installed: pip install -e '.[ray]'"
        if in_ci():
            pytest.fail(f"CI must run the Ray tests, but {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
