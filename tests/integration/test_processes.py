"""Several processes on one store at once: two writers of one ingest ref (the second waits for
the first's lock), a writer killed mid-ingest (the next one resumes), concurrent meta.db writers."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ctrstore import Client, Unavailable


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


WRITER = textwrap.dedent(
    """
    import sys, time
    from ctrstore import Client, Unavailable
    root, state, mode = sys.argv[1:4]
    c = Client(root=root, state=state)
    data = bytes(range(256)) * 4096
    if mode == "hold":
        w = c.content.writer("same-ref")
        w.write(data[:1000])
        print("holding", flush=True)
        sys.stdin.readline()
        w.write(data[1000:])
        print(w.commit(len(data)), flush=True)
    else:
        try:
            c.content.writer("same-ref")
        except Unavailable as e:
            print("unavailable:", e, flush=True)
        print(c.content.ingest("same-ref", data, wait=30), flush=True)
    """
)


def test_two_processes_writing_the_same_ref(client: Client, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    args = [sys.executable, str(script), str(client.root), str(client.state)]
    holder = subprocess.Popen([*args, "hold"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "holding"
    with pytest.raises(Unavailable, match="locked"):
        client.content.writer("same-ref")
    second = subprocess.Popen([*args, "wait"], stdout=subprocess.PIPE, text=True)
    assert second.stdout is not None
    assert second.stdout.readline().startswith("unavailable:")
    data = bytes(range(256)) * 4096
    out_holder, _ = holder.communicate("go\n", timeout=30)
    out_second, _ = second.communicate(timeout=30)
    assert (holder.returncode, second.returncode) == (0, 0)
    assert out_holder.strip() == digest_of(data)
    assert out_second.strip() == digest_of(data)
    assert [i.digest for i in client.content.walk()] == [digest_of(data)]
    assert client.content.read_bytes(digest_of(data)) == data


def test_killed_writer_leaves_a_usable_store(client: Client, tmp_path: Path) -> None:
    script = tmp_path / "die.py"
    script.write_text(
        textwrap.dedent(
            """
        import os, sys
        from ctrstore import Client
        c = Client(root=sys.argv[1], state=sys.argv[2])
        w = c.content.writer("dying", total=3_000_000)
        w.write(b"z" * 1_500_000)
        os._exit(9)  # no close, no commit
        """
        )
    )
    r = subprocess.run([sys.executable, str(script), str(client.root), str(client.state)], timeout=60)
    assert r.returncode == 9
    st = client.content.status("dying")
    assert st.offset == 1_500_000
    data = b"z" * 3_000_000
    assert client.content.ingest("dying", data, size=len(data)) == digest_of(data)


def test_concurrent_processes_write_meta_db(client: Client, tmp_path: Path) -> None:
    script = tmp_path / "w.py"
    script.write_text(
        textwrap.dedent(
            """
        import sys
        from ctrstore import Client
        c = Client(root=sys.argv[1], state=sys.argv[2])
        for i in range(25):
            c.content.ingest(f"{sys.argv[3]}-{i}", f"{sys.argv[3]}-{i}".encode())
        """
        )
    )
    procs = [
        subprocess.Popen([sys.executable, str(script), str(client.root), str(client.state), name])
        for name in ("a", "b", "c")
    ]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    assert len(list(client.content.walk())) == 75
