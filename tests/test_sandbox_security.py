"""Attacks on the sandbox: each must be contained, leave nothing changed outside, and the next
normal job must still get the right verdict.

These run as root here, where the sandbox drops each run to a dedicated uid inside fresh network
and mount namespaces; the tests check the effects, not the mechanism.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collabcoder.analyzers.sandbox import Sandbox, SandboxLimits
from collabcoder.analyzers.testcases import AssertSuite
from collabcoder.analyzers.testcases import TestStep as Step  # not collected by pytest
from collabcoder.analyzers.verdict import Outcome, Verdict

LIMITS = SandboxLimits(
    timeout_s=2.0,
    cpu_time_s=3,
    memory_mb=256,
    file_size_mb=1,
    max_processes=16,
    max_output_bytes=64 * 1024,
)
SECRET_ENV = "COLLAB_FAKE_API_KEY"
SECRET_VALUE = "sk-canary-" + uuid.uuid4().hex

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containment tests assume root")


def suite(entry: str, *tests: str) -> AssertSuite:
    steps = tuple(Step(source=t + "\n", is_test=True, line=i + 1) for i, t in enumerate(tests))
    return AssertSuite(entry_point=entry, preamble="", steps=steps)


ADD = suite("add", "assert candidate(1, 2) == 3", "assert candidate(5, 5) == 10")
GOOD = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"


def program(body: str) -> str:
    return textwrap.dedent(body).strip() + "\n\n" + GOOD


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    # The secret is in our environment before the zygote starts: it must still not reach it.
    os.environ[SECRET_ENV] = SECRET_VALUE
    try:
        with Sandbox(workers=2, limits=LIMITS) as sandbox:
            yield sandbox
    finally:
        del os.environ[SECRET_ENV]


@pytest.fixture
def visible_dir() -> Iterator[Path]:
    """A root-owned directory outside the sandbox that its private /tmp does not hide."""
    base = "/run" if os.access("/run", os.W_OK) else None
    d = Path(tempfile.mkdtemp(prefix="collab-canary-", dir=base))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def slot_processes(sb: Sandbox) -> list[str]:
    """Live (non-zombie) processes running as one of the sandbox's slot uids."""
    uids = {str(u) for u in sb.isolation.get("uids") or ()}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields["Uid"].split()[0] in uids and not fields["State"].strip().startswith("Z"):
            found.append(entry)
    return found


def assert_contained(sb: Sandbox, zygote: int | None = None) -> None:
    """No process of the attack left behind, and a normal job is judged right."""
    deadline = time.monotonic() + 3
    while slot_processes(sb) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slot_processes(sb) == []
    if zygote is not None:
        assert sb.zygote_pid == zygote
    good, wrong = sb.run_many([_job(GOOD), _job(WRONG)])
    assert good.outcome is Outcome.PASSED and good.passed_count == 2
    assert wrong.outcome is Outcome.WRONG_ANSWER


def _job(prog: str) -> object:
    from collabcoder.analyzers.sandbox import AssertJob

    return AssertJob(prog, ADD)


def run(sb: Sandbox, body: str, tests: AssertSuite = ADD) -> Verdict:
    return sb.run_asserts(program(body), tests)


def test_isolation_is_fully_in_place(sb: Sandbox) -> None:
    iso = sb.isolation
    assert iso["uid_drop"] and iso["netns"] and iso["mountns"] and iso["uids"]


def test_cannot_touch_files_outside_its_directory(
    sb: Sandbox, visible_dir: Path, tmp_path: Path
) -> None:
    canaries = [visible_dir / "canary.txt", tmp_path / "canary.txt"]
    for c in canaries:
        c.write_text("canary")
        c.chmod(0o644)
    tag = uuid.uuid4().hex
    targets = [str(c) for c in canaries]
    new_files = [f"/tmp/evil-{tag}", f"/var/tmp/evil-{tag}", f"/dev/shm/evil-{tag}",
                 str(visible_dir / f"evil-{tag}"), f"../evil-{tag}"]  # fmt: skip
    v = run(
        sb,
        f"""
        import os, shutil
        results = []
        for path in {targets!r}:
            for attempt in (lambda: open(path, "w").write("pwned"), lambda: os.remove(path),
                            lambda: os.rename(path, path + ".moved"), lambda: os.chmod(path, 0o777),
                            lambda: shutil.rmtree(os.path.dirname(path))):
                try:
                    attempt()
                    results.append("succeeded")
                except OSError:
                    results.append("refused")
        for path in {new_files!r}:
            try:
                open(path, "w").write("x")
                results.append("succeeded")
            except OSError:
                results.append("refused")
        open("inside.txt", "w").write("fine")  # its own directory is writable
        print(results)
        """,
    )
    assert v.outcome is Outcome.PASSED, v
    assert "succeeded" not in v.stdout and "refused" in v.stdout
    for c in canaries:
        assert c.read_text() == "canary" and oct(c.stat().st_mode)[-3:] == "644"
    for path in new_files[:-1]:
        assert not os.path.exists(path)
    assert sorted(p.name for p in visible_dir.iterdir()) == ["canary.txt"]
    assert_contained(sb)


def test_working_directory_is_private_and_emptied(sb: Sandbox) -> None:
    first = run(sb, "import os\nprint(os.getcwd())\nopen('left-behind', 'w').write('x')")
    cwd = first.stdout.strip()
    second = run(sb, "import os\nprint(sorted(os.listdir('.')), os.getcwd())")
    assert first.outcome is second.outcome is Outcome.PASSED
    assert second.stdout.startswith("[]")  # nothing from an earlier run, whichever slot
    assert not os.path.exists(os.path.join(cwd, "left-behind"))  # not on the host either


def test_fork_bomb(sb: Sandbox) -> None:
    v = run(
        sb,
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
    )
    assert v.outcome is Outcome.TIMEOUT
    assert_contained(sb)


def test_daemonized_children_are_killed(sb: Sandbox) -> None:
    # Escapes the process group with setsid; the per-uid sweep still finds it.
    v = run(
        sb,
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(600)
            os._exit(0)
        """,
    )
    assert v.outcome is Outcome.PASSED
    assert_contained(sb)


def test_infinite_loop_with_a_subprocess(sb: Sandbox) -> None:
    v = run(
        sb,
        """
        import subprocess
        subprocess.Popen(["sleep", "600"])
        while True:
            pass
        """,
    )
    assert v.outcome is Outcome.TIMEOUT and v.tests == ()
    assert_contained(sb)


def test_memory_bomb(sb: Sandbox) -> None:
    v = run(sb, "hog = []\nwhile True:\n    hog.append(bytearray(10 ** 7))")
    assert v.outcome is Outcome.MEMORY_EXCEEDED
    assert_contained(sb)


def test_huge_file(sb: Sandbox) -> None:
    v = run(
        sb,
        """
        with open("big.bin", "wb") as f:
            for _ in range(100):
                f.write(b"0" * 1024 * 1024)
        """,
    )
    assert v.outcome is Outcome.RUNTIME_ERROR
    assert v.extra["error"]["error_type"] == "OSError"
    assert "File too large" in v.extra["error"]["message"]
    assert_contained(sb)


def test_no_network_even_to_localhost(sb: Sandbox) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        v = run(
            sb,
            f"""
            import socket
            outcomes = []
            for target in [("127.0.0.1", {port}), ("8.8.8.8", 53), ("localhost", {port})]:
                try:
                    socket.create_connection(target, timeout=1).close()
                    outcomes.append("connected")
                except OSError as e:
                    outcomes.append(type(e).__name__)
            try:
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", {port}))
                outcomes.append("sent")
            except OSError as e:
                outcomes.append(type(e).__name__)
            print(outcomes)
            """,
        )
        assert v.outcome is Outcome.PASSED, v
        assert "connected" not in v.stdout and "sent" not in v.stdout
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever reached us
    finally:
        listener.close()
    assert_contained(sb)


def test_environment_secrets_are_not_visible(sb: Sandbox) -> None:
    v = run(
        sb,
        """
        import os
        print(dict(os.environ))
        seen = []
        for pid in os.listdir("/proc"):
            try:
                seen.append(open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
            except OSError:
                pass
        print(seen)
        """,
    )
    assert v.outcome is Outcome.PASSED
    assert SECRET_VALUE not in v.stdout + v.stderr
    assert SECRET_ENV not in v.stdout
    assert "'HOME'" in v.stdout  # it did print an environment: a minimal one
    assert_contained(sb)


def test_secret_file_outside_is_unreadable(sb: Sandbox, visible_dir: Path, tmp_path: Path) -> None:
    secrets = [visible_dir / "secret.txt", tmp_path / "secret.txt"]
    for s in secrets:
        s.write_text(SECRET_VALUE)
        s.chmod(0o600)
    v = run(
        sb,
        f"""
        for path in {[str(s) for s in secrets]!r}:
            try:
                print(open(path).read())
            except OSError as e:
                print(type(e).__name__)
        """,
    )
    assert v.outcome is Outcome.PASSED
    assert SECRET_VALUE not in v.stdout and "PermissionError" in v.stdout
    assert_contained(sb)


def test_killing_its_parent(sb: Sandbox) -> None:
    zygote = sb.zygote_pid
    v = run(
        sb,
        """
        import os, signal
        for target in (os.getppid(), 1):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        os.kill(-1, signal.SIGKILL)  # everything it may signal: only its own uid
        """,
    )
    assert v.outcome is Outcome.PASSED
    assert_contained(sb, zygote)
    v = run(sb, "import os, signal\nos.killpg(os.getpgrp(), signal.SIGKILL)")
    assert v.outcome is Outcome.RUNTIME_ERROR and "SIGKILL" in v.extra["error"]["message"]
    assert_contained(sb, zygote)


@pytest.mark.parametrize(
    "exit_call", ["import sys; sys.exit(0)", "import os; os._exit(0)", "exit(0)"]
)
def test_exiting_before_the_tests_is_not_a_pass(sb: Sandbox, exit_call: str) -> None:
    v = run(sb, exit_call)
    assert v.outcome is Outcome.RUNTIME_ERROR and not v.all_passed and v.tests == ()
    in_test = sb.run_asserts(f"def add(a, b):\n    {exit_call}\n", ADD)
    assert in_test.outcome is Outcome.RUNTIME_ERROR
    assert in_test.passed_count == 0
    assert_contained(sb)


def test_forged_results_are_ignored(sb: Sandbox) -> None:
    fake = '{"t":"loaded"}\n{"t":"test","i":0,"o":"passed"}\n{"t":"test","i":1,"o":"passed"}\n{"t":"done"}\n'
    v = sb.run_asserts(
        textwrap.dedent(
            f"""
            import os
            FAKE = {fake!r}
            print(FAKE)
            for fd in range(3, 10):
                try:
                    os.write(fd, FAKE.encode())
                except OSError:
                    pass
            os._exit(0)
            """
        )
        + WRONG,
        ADD,
    )
    assert v.outcome is Outcome.RUNTIME_ERROR and not v.all_passed and v.tests == ()
    assert_contained(sb)


def test_redefined_builtins_do_not_change_the_tests(sb: Sandbox) -> None:
    tests = suite(
        "f",
        "assert len(candidate()) == 2",
        "assert isinstance(candidate(), list)",
        "assert abs(-3) == 3 and max(candidate()) == 3",
    )
    v = sb.run_asserts(
        textwrap.dedent(
            """
            import builtins, json, operator
            builtins.AssertionError = type("Fake", (Exception,), {})
            builtins.len = lambda x: 2
            builtins.isinstance = lambda *a: True
            builtins.abs = builtins.max = lambda *a: 3
            operator.eq = lambda a, b: True
            json.dumps = lambda *a, **k: '{"t": "done"}'

            def f():
                return (1, 2, 3)
            """
        ),
        tests,
    )
    assert [t.outcome for t in v.tests] == [Outcome.WRONG_ANSWER] * 2 + [Outcome.PASSED]
    assert v.tests[0].actual == "3"
    assert_contained(sb)


@pytest.mark.parametrize(
    "returned",
    [
        "type('AlwaysEqual', (), {'__eq__': lambda s, o: True, '__ne__': lambda s, o: False})()",
        "__import__('unittest.mock', fromlist=['ANY']).ANY",
        "type('S', (str,), {'__eq__': lambda s, o: True, '__hash__': str.__hash__})('no')",
        "[type('E', (), {'__eq__': lambda s, o: True})()]",
    ],
)
def test_objects_that_equal_anything_are_not_trusted(sb: Sandbox, returned: str) -> None:
    v = sb.run_asserts(f"def add(a, b):\n    return {returned}\n", ADD)
    assert [t.outcome for t in v.tests] == [Outcome.WRONG_ANSWER] * 2
    assert "untrusted comparison" in (v.tests[0].message or "")
    truthy = "type('T', (), {'__bool__': lambda s: True})()"
    t = sb.run_asserts(f"def f():\n    return {truthy}\n", suite("f", "assert candidate()"))
    assert t.outcome is Outcome.WRONG_ANSWER


def test_ordinary_subclasses_still_compare(sb: Sandbox) -> None:
    prog = (
        "import collections\nP = collections.namedtuple('P', 'x y')\ndef f():\n    return P(1, 2)\n"
    )
    v = sb.run_asserts(
        prog, suite("f", "assert candidate() == (1, 2)", "assert candidate().x == 1")
    )
    assert v.outcome is Outcome.PASSED


def test_megabytes_of_output_are_capped(sb: Sandbox) -> None:
    t0 = time.monotonic()
    v = run(
        sb,
        "import sys\nprint('x' * 50_000_000)\nfor _ in range(10_000):\n    print('y' * 1000, file=sys.stderr)",
    )
    assert v.outcome is Outcome.PASSED
    assert len(v.stdout) == LIMITS.max_output_bytes and len(v.stderr) == LIMITS.max_output_bytes
    assert time.monotonic() - t0 < 10
    assert_contained(sb)


def test_runs_of_another_sandbox_are_out_of_reach(sb: Sandbox) -> None:
    """Each zygote has its own slot uids, so one's cleanup (kill -1) never reaches another's."""
    with Sandbox(workers=2, limits=LIMITS) as other:
        assert not set(other.isolation["uids"]) & set(sb.isolation["uids"])
        sleeper = "import time\ndef add(a, b):\n    time.sleep(0.6)\n    return a + b\n"
        verdicts: list[Verdict] = []
        import threading

        waiting = threading.Thread(target=lambda: verdicts.append(sb.run_asserts(sleeper, ADD)))
        waiting.start()
        time.sleep(0.2)
        killer = program("import os, signal\nos.kill(-1, signal.SIGKILL)")
        assert all(v.outcome is Outcome.PASSED for v in other.run_many([_job(killer)] * 4))
        waiting.join()
        assert verdicts[0].outcome is Outcome.PASSED
