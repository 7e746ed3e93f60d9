"""scripts/install-deps.sh, the dependency step `make run` and `make check`
share, against fake dpkg-query, apt-get and id: which packages it installs,
how, and what it tells someone who is not root."""

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "install-deps.sh")

# A package is installed when $FAKE_STATE/<name> exists.
FAKE_DPKG_QUERY = """#!/bin/sh
for last; do :; done
if [ -e "$FAKE_STATE/$last" ]; then echo "install ok installed"; else exit 1; fi
"""
# Logs each call with its standard input and frontend; install creates the
# packages' files unless FAKE_APT_FAIL is set.
FAKE_APT_GET = """#!/bin/sh
echo "$* | stdin=$(readlink /proc/self/fd/0) | frontend=${DEBIAN_FRONTEND:-}" >>"$FAKE_STATE/apt.log"
[ -z "${FAKE_APT_FAIL:-}" ] || exit 100
if [ "$1" = install ]; then
	for a; do case $a in -* | install) ;; *) : >"$FAKE_STATE/$a" ;; esac; done
fi
"""
FAKE_ID = """#!/bin/sh
echo "$FAKE_UID"
"""

BUILD_SET = ["liburing-dev", "libseccomp-dev"]
# A few of the test set: enough to see that check asks for both sets.
SOME_TEST_PACKAGES = ["libcmocka-dev", "python3-pytest"]


@pytest.fixture
def deps(tmp_path):
    """Runs install-deps.sh with the fakes first on PATH: deps(SET, uid=, have=[...])."""
    bindir = tmp_path / "bin"
    state = tmp_path / "state"
    bindir.mkdir()
    state.mkdir()
    for name, text in (("dpkg-query", FAKE_DPKG_QUERY), ("apt-get", FAKE_APT_GET),
                       ("id", FAKE_ID)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)

    def run(which, uid=0, have=(), apt_fails=False):
        for p in have:
            (state / p).touch()
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "FAKE_STATE": str(state),
               "FAKE_UID": str(uid)}
        if apt_fails:
            env["FAKE_APT_FAIL"] = "1"
        r = subprocess.run(["sh", SCRIPT, which], capture_output=True, text=True, env=env,
                           timeout=60, stdin=subprocess.DEVNULL)
        log = state / "apt.log"
        r.apt_calls = log.read_text().splitlines() if log.exists() else []
        r.installed = {p.name for p in state.iterdir() if p.name != "apt.log"}
        return r
    return run


def test_root_installs_missing_build_package_after_update_without_stdin(deps):
    r = deps("build", uid=0)
    assert r.returncode == 0, r.stderr
    assert len(r.apt_calls) == 2, r.apt_calls
    assert r.apt_calls[0].startswith("update ")
    install = r.apt_calls[1]
    assert install.startswith("install -y ")
    assert all(f" {p} " in install for p in BUILD_SET), install
    assert "stdin=/dev/null" in install and "frontend=noninteractive" in install
    assert r.installed == set(BUILD_SET)


def test_root_with_everything_present_runs_no_apt_get(deps):
    r = deps("build", uid=0, have=BUILD_SET)
    assert r.returncode == 0
    assert r.apt_calls == []
    assert "all present" in r.stdout


def test_check_installs_only_what_is_missing_of_both_sets(deps):
    r = deps("check", uid=0, have=["python3-pytest"])
    assert r.returncode == 0, r.stderr
    install = r.apt_calls[-1].split(" | ")[0].split()
    assert "liburing-dev" in install and "libcmocka-dev" in install
    assert "python3-pytest" not in install


def test_non_root_run_prints_the_exact_command_and_goes_on(deps):
    r = deps("build", uid=1000)
    assert r.returncode == 0
    assert r.apt_calls == []
    assert ("    sudo apt-get install -y --no-install-recommends " + " ".join(BUILD_SET) + "\n"
            in r.stderr), r.stderr
    assert "serves with epoll" in r.stderr


def test_non_root_check_prints_the_exact_command_and_stops(deps):
    r = deps("check", uid=1000, have=SOME_TEST_PACKAGES)
    assert r.returncode == 1
    assert r.apt_calls == []
    line = [l for l in r.stderr.splitlines() if "apt-get install" in l]
    assert len(line) == 1, r.stderr
    words = line[0].split()
    assert words[:5] == ["sudo", "apt-get", "install", "-y", "--no-install-recommends"]
    assert "liburing-dev" in words and "clang" in words
    assert not set(SOME_TEST_PACKAGES) & set(words)


@pytest.mark.parametrize("which,status", [("build", 0), ("check", 1)])
def test_failed_install_goes_on_for_run_and_stops_check(deps, which, status):
    r = deps(which, uid=0, apt_fails=True)
    assert r.returncode == status, r.stderr
    assert "could not install" in r.stderr and "liburing-dev" in r.stderr


def test_unknown_set_is_a_usage_error(deps):
    r = deps("everything")
    assert r.returncode == 2
    assert "usage" in r.stderr
