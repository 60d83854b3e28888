#!/usr/bin/python3
"""test_faultfs.py - self-test of faultfs: each fault mode checked with plain
Python file operations on a real FUSE mount.

Environment: FAULTFS (path of the faultfs binary), SB_TEST_TMP (scratch
directory; backing and mount directories are made under it).
Exit status: 0 all passed, 1 a check failed, 77 skipped (no /dev/fuse, no
fusermount3, not root, or FAULTFS unset).
Every test gets its own mount and always unmounts it (finally + atexit);
faultfs runs with -o auto_unmount, so even a killed test leaves no mount.
"""
import ctypes
import errno
import os
import shutil
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultfsctl import FaultFS, FaultFSError, is_mounted  # noqa: E402

SKIP = 77
OP_TIMEOUT_S = 10.0


def skip_reason():
    if not os.environ.get("FAULTFS") or not os.access(os.environ["FAULTFS"], os.X_OK):
        return "FAULTFS is not set to the faultfs binary"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (Debian package fuse3)"
    if os.geteuid() != 0:
        return "not running as root"
    return None


# ---- small helpers ----
def write_file(path, data, sync=True):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def expect_errno(err, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        assert e.errno == err, "expected %s, got %r" % (errno.errorcode[err], e)
        return
    raise AssertionError("expected %s from %s" % (errno.errorcode[err], fn.__name__))


def eq(got, want, what):
    assert got == want, "%s: got %r, want %r" % (what, got, want)


_libc = ctypes.CDLL(None, use_errno=True)


def rename_noreplace(a, b):
    AT_FDCWD, RENAME_NOREPLACE = -100, 1
    if _libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), RENAME_NOREPLACE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# ---- tests: each gets (fs, m) with m the mount point ----
def test_passthrough(fs, m):
    write_file(m + "/a", b"hello world", sync=False)
    eq(read_file(m + "/a"), b"hello world", "read back")
    eq(read_file(fs.backing + "/a"), b"hello world", "backing file")
    fd = os.open(m + "/a", os.O_RDWR)
    try:
        eq(os.pwrite(fd, b"WORLD", 6), 5, "pwrite")
        eq(os.pread(fd, 11, 0), b"hello WORLD", "pread after pwrite")
        os.ftruncate(fd, 5)
        os.fdatasync(fd)
        eq(os.fstat(fd).st_size, 5, "ftruncate size")
    finally:
        os.close(fd)
    with open(m + "/a", "ab") as f:
        f.write(b"!")
    eq(read_file(m + "/a"), b"hello!", "O_APPEND write")
    os.mkdir(m + "/d")
    os.rename(m + "/a", m + "/d/b")
    eq(sorted(os.listdir(m)), ["d"], "root listing hides the trash")
    eq(os.listdir(m + "/d"), ["b"], "listing of d")
    eq(read_file(m + "/d/b"), b"hello!", "renamed file")
    write_file(m + "/d/c", b"c")
    expect_errno(errno.EEXIST, rename_noreplace, m + "/d/c", m + "/d/b")
    os.rename(m + "/d/c", m + "/d/b")  # replaces
    eq(read_file(m + "/d/b"), b"c", "rename over a file")
    os.unlink(m + "/d/b")
    expect_errno(errno.ENOENT, os.stat, m + "/d/b")
    expect_errno(errno.ENOENT, os.stat, m + "/.faultfs-trash")
    os.rmdir(m + "/d")
    eq(os.listdir(m), [], "empty after rmdir")
    os.statvfs(m)
    st = fs.status()
    assert st["writes"] >= 3 and st["bytes_written"] >= 17, st


def test_fsync_eio(fs, m):
    fd = os.open(m + "/f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x")
        fs.fsync_eio(True)
        expect_errno(errno.EIO, os.fsync, fd)
        expect_errno(errno.EIO, os.fdatasync, fd)
        expect_errno(errno.EIO, fsync_dir, m)
        fs.fsync_eio(False)
        os.fsync(fd)
        fsync_dir(m)
    finally:
        os.close(fd)
    st = fs.status()
    assert st["fsyncs_failed"] >= 3 and st["fsyncs"] >= 2, st


def test_fsync_eio_does_not_make_durable(fs, m):
    write_file(m + "/f", b"base")
    fsync_dir(m)
    fd = os.open(m + "/f", os.O_RDWR)
    try:
        os.pwrite(fd, b"NEW", 0)
        fs.fsync_eio(True)
        expect_errno(errno.EIO, os.fsync, fd)
        fs.fsync_eio(False)
    finally:
        os.close(fd)
    fs.powerloss()
    eq(read_file(fs.backing + "/f"), b"base", "data after failed fsync + powerloss")


def test_enospc(fs, m):
    fs.enospc_after(100)
    sv = os.statvfs(m)
    assert sv.f_bavail * sv.f_frsize <= 100, "statfs shows the budget: %r" % (sv,)
    fd = os.open(m + "/f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        eq(os.pwrite(fd, b"a" * 60, 0), 60, "write inside the budget")
        expect_errno(errno.ENOSPC, os.pwrite, fd, b"b" * 50, 60)  # crosses: fails whole
        eq(os.fstat(fd).st_size, 60, "size after the failed write")
        expect_errno(errno.ENOSPC, os.ftruncate, fd, 200)  # growth counts too
        eq(os.pwrite(fd, b"c" * 40, 60), 40, "write of exactly the rest")
        expect_errno(errno.ENOSPC, os.pwrite, fd, b"d", 0)
        fs.enospc_after(-1)
        eq(os.pwrite(fd, b"e" * 10, 100), 10, "write after enospc_after -1")
    finally:
        os.close(fd)
    eq(read_file(m + "/f"), b"a" * 60 + b"c" * 40 + b"e" * 10, "file contents")
    assert fs.status()["failed_ops"] >= 3


def test_delay(fs, m):
    write_file(m + "/f", b"x")
    fs.delay_ms(150)
    t0 = time.monotonic()
    read_file(m + "/f")
    took = time.monotonic() - t0
    fs.delay_ms(0)
    assert took >= 0.15, "delay_ms 150 took only %.3fs" % took
    t0 = time.monotonic()
    read_file(m + "/f")
    assert time.monotonic() - t0 < 0.5


def test_freeze(fs, m):
    fd = os.open(m + "/f", os.O_RDWR | os.O_CREAT, 0o644)
    done = threading.Event()
    result = {}

    def writer():
        try:
            result["n"] = os.pwrite(fd, b"frozen", 0)
        except OSError as e:
            result["err"] = e
        done.set()

    t = threading.Thread(target=writer, daemon=True)
    try:
        fs.freeze()
        eq(fs.status()["frozen"], 1, "status frozen flag")
        t.start()
        assert not done.wait(0.5), "a write finished while frozen"
        fs.thaw()
        assert done.wait(OP_TIMEOUT_S), "the write did not finish after thaw"
    finally:
        fs.thaw()
        t.join(OP_TIMEOUT_S)
    os.close(fd)
    eq(result.get("n"), 6, "write result after thaw (%r)" % result)
    eq(read_file(m + "/f"), b"frozen", "contents after thaw")


def test_powerloss(fs, m):
    b = fs.backing
    # Durable baseline: files synced, their directories synced.
    os.mkdir(m + "/d")
    os.mkdir(m + "/e")
    for name, data in [("keep", b"K" * 10), ("victim", b"V" * 5), ("old", b"O" * 7),
                       ("trunc", b"T" * 9), ("otrunc", b"R" * 4)]:
        write_file(m + "/d/" + name, data)
    write_file(m + "/e/target", b"old target")
    fsync_dir(m + "/d")
    fsync_dir(m + "/e")
    fsync_dir(m)
    # (a) unsynced overwrite + append of a synced file: reverted.
    fd = os.open(m + "/d/keep", os.O_RDWR)
    os.pwrite(fd, b"xx", 3)
    os.pwrite(fd, b"appended", 10)
    os.close(fd)
    # (b) created and fdatasync'd, directory never fsynced: disappears.
    fd = os.open(m + "/d/new", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"new")
    os.fdatasync(fd)
    os.close(fd)
    # (c) unsynced rename, (d) unsynced unlink, (g) unsynced truncate: undone.
    os.rename(m + "/d/old", m + "/d/renamed")
    os.unlink(m + "/d/victim")
    os.truncate(m + "/d/trunc", 2)
    write_file(m + "/d/otrunc", b"r", sync=False)  # O_TRUNC open + write
    # (e) rename over an existing file, then dir fsync: durable.
    write_file(m + "/e/tmp", b"new target")
    os.rename(m + "/e/tmp", m + "/e/target")
    # (f) a created file whose directory is fsynced: kept, with synced data only.
    write_file(m + "/e/created", b"synced")
    fsync_dir(m + "/e")
    with open(m + "/e/created", "ab") as f:
        f.write(b" not synced")
    st = fs.status()
    # Held: keep (2 old bytes), trunc (7 cut bytes), otrunc (4), e/created
    # (append: none); pending entry ops: create d/new, rename d/old, unlink d/victim.
    eq((st["undo_files"], st["undo_bytes"], st["undo_ns_ops"]), (4, 13, 3), "undo state")

    fs.powerloss()
    st = fs.status()
    eq((st["dead"], st["undo_files"], st["undo_ns_ops"], st["undo_bytes"]), (1, 0, 0, 0),
       "status after powerloss")
    expect_errno(errno.EIO, os.stat, m + "/d")
    expect_errno(errno.EIO, os.listdir, m)
    # The backing directory is the truth.
    eq(sorted(os.listdir(b + "/d")), ["keep", "old", "otrunc", "trunc", "victim"],
       "d after powerloss")
    eq(sorted(os.listdir(b + "/e")), ["created", "target"], "e after powerloss")
    eq(os.listdir(b + "/.faultfs-trash"), [], "trash after powerloss")
    fs.revive()
    eq(fs.status()["dead"], 0, "dead flag after revive")
    eq(sorted(os.listdir(m)), ["d", "e"], "root through the mount")
    eq(sorted(os.listdir(m + "/d")), ["keep", "old", "otrunc", "trunc", "victim"],
       "d through the mount")
    eq(read_file(m + "/d/keep"), b"K" * 10, "unsynced overwrite reverted")
    eq(read_file(m + "/d/old"), b"O" * 7, "unsynced rename undone")
    eq(read_file(m + "/d/victim"), b"V" * 5, "unsynced unlink undone")
    eq(read_file(m + "/d/trunc"), b"T" * 9, "unsynced truncate undone")
    eq(read_file(m + "/d/otrunc"), b"R" * 4, "unsynced O_TRUNC + write undone")
    eq(read_file(m + "/e/target"), b"new target", "durable rename over a file")
    eq(read_file(m + "/e/created"), b"synced", "created file in an fsynced dir")
    # The revived state is the new baseline: a second powerloss changes nothing.
    fs.powerloss()
    fs.revive()
    eq(read_file(m + "/e/created"), b"synced", "after a second powerloss")


def test_powerloss_dir_ops(fs, m):
    os.mkdir(m + "/keepdir")
    os.mkdir(m + "/gone")
    fsync_dir(m)
    os.mkdir(m + "/newdir")             # mkdir, parent never fsynced: undone
    os.rmdir(m + "/gone")               # rmdir, parent never fsynced: undone
    write_file(m + "/keepdir/x", b"x")  # file in a dir that is then fsynced
    fsync_dir(m + "/keepdir")
    fs.powerloss()
    eq(sorted(os.listdir(fs.backing)), [".faultfs-trash", "gone", "keepdir"], "root")
    eq(os.listdir(fs.backing + "/keepdir"), ["x"], "keepdir")
    fs.revive()
    eq(read_file(m + "/keepdir/x"), b"x", "file in fsynced dir")


def test_powerloss_during_concurrent_appends(fs, m):
    # Writers append records and fdatasync every few; powerloss strikes
    # mid-run. Each file must then hold exactly a synced prefix: at least
    # what an acknowledged sync covered, at most what the last sync attempt did.
    nthreads, nrecords, group = 4, 4000, 5
    for i in range(nthreads):
        write_file("%s/w%d" % (m, i), b"")
    fsync_dir(m)
    state = [{"acked": 0, "attempted": 0} for _ in range(nthreads)]

    def writer(i):
        fd = os.open("%s/w%d" % (m, i), os.O_WRONLY)
        off = 0
        try:
            for n in range(nrecords):
                rec = b"%d:%04d;" % (i, n)
                os.pwrite(fd, rec, off)
                off += len(rec)
                if (n + 1) % group == 0:
                    state[i]["attempted"] = off
                    os.fdatasync(fd)
                    state[i]["acked"] = off
        except OSError as e:
            assert e.errno == errno.EIO, e
        finally:
            os.close(fd)

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(nthreads)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    fs.powerloss()
    for t in threads:
        t.join(OP_TIMEOUT_S)
        assert not t.is_alive()
    for i in range(nthreads):
        data = read_file("%s/w%d" % (fs.backing, i))
        want = b"".join(b"%d:%04d;" % (i, n) for n in range(nrecords))
        assert state[i]["acked"] <= len(data) <= max(state[i]["attempted"], state[i]["acked"]), \
            (i, len(data), state[i])
        eq(data, want[:len(data)], "w%d holds a prefix" % i)
    print("  synced bytes at powerloss: %s" % [st["acked"] for st in state])
    assert any(st["acked"] > 0 for st in state), "no sync happened before the powerloss"
    assert any(st["acked"] < len(want) for st in state), "powerloss came after the writers"


def test_stale_mount_after_kill(fs, m):
    fs.kill()
    deadline = time.monotonic() + OP_TIMEOUT_S
    while is_mounted(m) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_mounted(m), "mount left behind after SIGKILL of faultfs"
    fs.stop()
    fs.returncode = 0  # killed on purpose


def test_no_mount_left_when_test_is_killed(fs, m):
    # A child Python starts its own FaultFS and is SIGKILLed while mounted.
    import signal
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    base = os.path.dirname(m) + "/child"
    script = ("import sys, time; sys.path.insert(0, %r); from faultfsctl import FaultFS; "
              "fs = FaultFS(%r, %r, %r).start(); print('mounted', flush=True); time.sleep(60)"
              % (here, fs.binary, base + "/backing", base + "/mnt"))
    child = subprocess.Popen([sys.executable, "-B", "-c", script], stdout=subprocess.PIPE)
    try:
        eq(child.stdout.readline().strip(), b"mounted", "child mounted")
        assert is_mounted(base + "/mnt")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(OP_TIMEOUT_S)
        deadline = time.monotonic() + OP_TIMEOUT_S
        while is_mounted(base + "/mnt") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_mounted(base + "/mnt"), "mount left behind after SIGKILL of the test"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if is_mounted(base + "/mnt"):
            subprocess.run(["fusermount3", "-u", "-z", base + "/mnt"])


TESTS = [test_passthrough, test_fsync_eio, test_fsync_eio_does_not_make_durable, test_enospc,
         test_delay, test_freeze, test_powerloss, test_powerloss_dir_ops,
         test_powerloss_during_concurrent_appends,
         test_stale_mount_after_kill, test_no_mount_left_when_test_is_killed]


def main():
    reason = skip_reason()
    if reason:
        print("SKIP faultfs self-test: %s" % reason)
        return SKIP
    tmp = os.path.join(os.environ.get("SB_TEST_TMP") or "/tmp", "faultfs-%d" % os.getpid())
    os.makedirs(tmp, exist_ok=True)
    failed = []
    for t in TESTS:
        base = os.path.join(tmp, t.__name__)
        fs = FaultFS(os.environ["FAULTFS"], base + "/backing", base + "/mnt")
        t0 = time.monotonic()
        try:
            try:
                fs.start()
            except FaultFSError as e:
                if t is TESTS[0] and ("not permitted" in str(e) or "Permission denied" in str(e)):
                    print("SKIP faultfs self-test: cannot mount FUSE here: %s" % e)
                    return SKIP
                raise
            try:
                t(fs, fs.mountpoint)
            finally:
                rc = fs.stop()
            assert rc == 0, "faultfs exited with %s:\n%s" % (rc, fs.log_tail())
            print("PASS %s (%.2fs)" % (t.__name__, time.monotonic() - t0))
        except Exception:  # noqa: BLE001 - report every failure, keep going
            failed.append(t.__name__)
            print("FAIL %s\n%s--- faultfs log (%s) ---\n%s" % (
                t.__name__, traceback.format_exc(), fs.log_path, fs.log_tail()))
    if not failed:
        if not any(is_mounted(os.path.join(tmp, t.__name__, "mnt")) for t in TESTS):
            shutil.rmtree(tmp, ignore_errors=True)
        print("faultfs self-test: all %d tests passed" % len(TESTS))
        return 0
    print("faultfs self-test: %d failed: %s (logs under %s)" % (len(failed), " ".join(failed), tmp))
    return 1


if __name__ == "__main__":
    sys.exit(main())
