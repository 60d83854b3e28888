"""Disk faults on a real file system (../../shared/RELIABILITY.md, "Disk faults": "a small tmpfs or
loop-mounted ext4 fills up"): the server's data dir is on a 64 MiB ext4 image, loop-mounted by the
test, `--fsync-policy always`, 32 KiB segments (so segments roll); producers and consumers record a
history (history.py) that is checked against a final read. test_disk_faults.py does the same on faultfs,
whose faults are simulated; here the kernel's ext4 produces them.

1. disk full (`--io sync`, then `--io uring`): a ballast file takes every free block under load:
   RESOURCE_EXHAUSTED, the server stays up, health and reads answer; the ballast is deleted:
   writes resume within 10 s without a restart (storage/sb_log.h: a full log retries every
   second); nothing acknowledged is lost, also across a restart.
2. fsfreeze (`--io sync`): `fsfreeze -f` for 4 s under DeadlineProducers (2 s deadline): nothing
   invoked after the freeze is acknowledged before the thaw, calls end DEADLINE_EXCEEDED, the
   server stays up, health is printed; after the thaw service resumes, the check is clean.

The image is mkfs'd with `-m 0` (the server runs as root, and root may use ext4's reserved blocks)
and is always thawed, unmounted and deleted, also when a test fails. A frozen file system left
behind would hang every later writer on it, so a thaw is also run at exit, on SIGTERM/SIGHUP, and
by a watchdog process started before each freeze (it thaws after 20 s if this process was killed).

Skipped (exit 77) when not root, or when an ext4 image cannot be made, loop-mounted and frozen
here (probed with an 8 MiB image). SB_DISK_ONLY=<part of a test name> runs only those tests.
"""
import atexit
import errno
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import disk_common as dc  # noqa: E402
from disk_common import wait_for  # noqa: E402
from history import History  # noqa: E402
from test_disk_faults import TOPIC, Scenario, report  # noqa: E402
from workload import Consumer, Producer, final_read  # noqa: E402
import sbtest  # noqa: E402

ARGS = ["--fsync-policy", "always", "--segment-bytes", "32768"]
FS_MIB = 64
WATCHDOG_S = 20  # a freeze lasts 4 s; the watchdog thaws if nothing else did by then
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
FROZEN = set()  # mount points frozen right now


def tool(name):
    return shutil.which(name, path=SBIN_PATH) or name


def run(*cmd, timeout=60):
    r = subprocess.run([tool(cmd[0])] + list(cmd[1:]), capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, (r.stderr or r.stdout).strip()))


def thaw_all():
    for mnt in list(FROZEN):
        subprocess.run([tool("fsfreeze"), "-u", mnt], stderr=subprocess.DEVNULL, timeout=30)
        FROZEN.discard(mnt)


def on_signal(sig, _frame):
    thaw_all()
    sys.exit(128 + sig)  # SystemExit: the finally blocks still unmount


atexit.register(thaw_all)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, on_signal)


class LoopFS:
    """An ext4 file system of `mib` MiB in <base>/ext4.img, loop-mounted on <base>/mnt. Has the
    FaultFS methods DiskNode uses (start, thaw, stop) plus freeze."""

    def __init__(self, base, mib=FS_MIB):
        self.image = os.path.join(base, "ext4.img")
        self.mountpoint = os.path.join(base, "mnt")
        self.mib = mib
        self.proc = self.watchdog = None  # proc: DiskNode._unmount looks for a faultfs process
        self.mounted = False

    def start(self):
        os.makedirs(self.mountpoint, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(self.mib << 20)
        run("mkfs.ext4", "-q", "-F", "-m", "0", self.image)
        run("mount", "-o", "loop", self.image, self.mountpoint)
        self.mounted = True
        return self

    def freeze(self):
        self.watchdog = subprocess.Popen(
            [sys.executable, "-c", "import subprocess, sys, time; time.sleep(%d); "
             "subprocess.run([sys.argv[1], '-u', sys.argv[2]])" % WATCHDOG_S, tool("fsfreeze"), self.mountpoint],
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        FROZEN.add(self.mountpoint)
        run("fsfreeze", "-f", self.mountpoint)

    def thaw(self):
        if self.mountpoint in FROZEN:
            run("fsfreeze", "-u", self.mountpoint)
            FROZEN.discard(self.mountpoint)
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
            self.watchdog = None

    def stop(self):
        """Thaws, unmounts (lazily if still busy after 5 s) and deletes the image."""
        try:
            self.thaw()
        finally:
            for attempt in range(50 if self.mounted else 0):
                try:
                    run("umount", self.mountpoint)
                    break
                except RuntimeError as e:
                    if attempt == 49:
                        print("  %s; lazy unmount" % e, flush=True)
                        run("umount", "-l", self.mountpoint)
                    time.sleep(0.1)
            self.mounted = False
            if os.path.exists(self.image):
                os.remove(self.image)


class LoopNode(dc.DiskNode):
    """DiskNode (fixed port, logs beside the mount, start/stop/grep_logs) on a LoopFS."""

    def __init__(self, name, io="sync"):
        super().__init__(name, ARGS)
        self.args = ["--io", io] + list(ARGS)
        self.fs = LoopFS(self.base)

    def teardown(self, keep):
        try:
            self.fs.thaw()  # first: a process blocked on a frozen file system cannot exit
        finally:
            super().teardown(keep)


class LoopScenario(Scenario):
    """test_disk_faults.Scenario (topic TOPIC, History, clients, final_check) on a LoopNode."""

    def __init__(self, name, io="sync", partitions=2):
        self.name, self.partitions = name, partitions
        self.node = LoopNode(name, io)
        self.h = History(os.path.join(self.node.base, "history.jsonl"))
        self.t0 = time.time()
        self.ok = False
        self.threads = []


def skip_reason():
    if os.geteuid() != 0:
        return "not root (loop mounts and fsfreeze need root)"
    if not os.environ.get("STREAMBUSD") and not shutil.which(sbtest.STREAMBUSD):
        return "STREAMBUSD not set"
    missing = [t for t in ("mkfs.ext4", "mount", "umount", "fsfreeze") if not shutil.which(t, path=SBIN_PATH)]
    if missing:
        return "%s missing (Debian packages e2fsprogs, mount, util-linux)" % ", ".join(missing)
    base = sbtest.scratch_dir("realdisk-probe")
    fs = LoopFS(base, mib=8)
    try:
        fs.start()
        fs.freeze()
        fs.thaw()
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        return "cannot make, loop-mount and freeze an ext4 image here: %s" % e
    finally:
        try:
            fs.stop()
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            print("  probe cleanup: %s" % e, flush=True)
        sbtest.cleanup(base)
    return None


def outcomes(events):
    """{code or "OK": count} of dc.produce_events()."""
    out = {}
    for _, phase, code, _, _ in events:
        key = "OK" if phase == "ok" else code
        out[key] = out.get(key, 0) + 1
    return out


def fill(path):
    """Allocates a file at path in ever smaller pieces until the file system refuses even one
    block (ENOSPC); returns the bytes it got."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    size, piece = 0, 16 << 20
    try:
        while piece >= 4096:
            try:
                os.posix_fallocate(fd, size, piece)
                size += piece
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                piece //= 2
        os.fsync(fd)
    finally:
        os.close(fd)
    return size


def segments(node):
    return sum(f.endswith(".log") for _, _, files in os.walk(node.data) for f in files)


def remove_ballast(path):
    os.remove(path)


def disk_full(io):
    with LoopScenario("realdisk-full-" + io, io) as sc:
        node = sc.node
        prod = sc.add(Producer(node.addr, sc.h, TOPIC, sc.partitions, records_per_request=10, value_size=100,
                               window=8, error_backoff=0.01))
        cons = [sc.add(Consumer(node.addr, sc.h, TOPIC, p)) for p in range(sc.partitions)]
        wait_for("200 acks", lambda: prod.acked() >= 200, timeout=60)
        ballast = os.path.join(node.fs.mountpoint, "ballast")
        t_full = time.monotonic_ns()
        taken = fill(ballast)
        st = os.statvfs(node.fs.mountpoint)
        print("  ballast %.1f MiB after %d acks; left: %d KiB free, %d KiB available"
              % (taken / 2**20, prod.acked(), st.f_bfree * st.f_frsize >> 10, st.f_bavail * st.f_frsize >> 10))
        wait_for("a RESOURCE_EXHAUSTED response",
                 lambda: dc.RESOURCE_EXHAUSTED in outcomes(dc.produce_events(sc.h, since_time=t_full)), timeout=30)
        time.sleep(2)  # let every partition and request in flight meet the full disk
        codes = outcomes(dc.produce_events(sc.h, since_time=t_full))
        print("  disk full: responses since the ballast (code: count) %s; log_failed lines %d"
              % (codes, node.grep_logs("event=log_failed")))
        assert codes.get(dc.RESOURCE_EXHAUSTED, 0) > 0, codes
        assert node.alive(), "the server died on ENOSPC"
        probes = {svc or '""': dc.health(node.addr, svc) for svc in ("", "readiness", "liveness")}
        print("  health while full: %s" % probes)
        assert probes['""'] == "SERVING", probes
        snap = final_read(node.addr, TOPIC, sc.partitions, timeout=20)
        print("  reads while full: %s records" % [len(v) for v in snap.values()])

        resumes_while_full = node.grep_logs("event=log_resumed")
        t_space = time.monotonic_ns()
        remove_ballast(ballast)
        resumed = lambda: [e for e in dc.produce_events(sc.h, invoked_after=t_space) if e[1] == "ok"]  # noqa: E731
        try:
            wait_for("an ack after the ballast was deleted", resumed, timeout=10)
        except AssertionError:
            raise AssertionError("contract 'writes resume when space returns': no request invoked after the "
                                 "ballast was deleted was acknowledged within 10 s; responses (code: count) %s"
                                 % outcomes(dc.produce_events(sc.h, invoked_after=t_space))) from None
        first_ok = min(e[4] for e in resumed())
        print("  writes resumed %.2f s after the ballast was deleted, without a restart; log_resumed lines: "
              "%d while full, %d after" % ((first_ok - t_space) / 1e9, resumes_while_full,
                                          node.grep_logs("event=log_resumed") - resumes_while_full))
        target = prod.acked() + 200
        wait_for("200 more acks", lambda: prod.acked() >= target, timeout=60)
        sc.stop_clients()
        nseg = segments(node)
        res = sc.final_check()
        report(res, prod.stats, "; consumers %s; segments %d" % ([c.stats for c in cons], nseg))
        assert nseg > sc.partitions, "no segment rolled: %d segments" % nseg
        assert res.ok, "history anomalies after ENOSPC (history %s)" % sc.h.path
        assert node.stop() == 0
        node.start()  # what was acknowledged is on the disk
        res = sc.final_check()
        print("  after a restart: clean=%s final_records=%d" % (res.ok, res.counts["final_records"]))
        assert res.ok, "history anomalies after ENOSPC and a restart: %s" % res.format()
        assert node.stop() == 0
        sc.ok = True
        print("  %.1fs" % (time.time() - sc.t0))


def test_real_disk_full_sync():
    """Disk full on ext4 with the pwrite/fdatasync engine."""
    disk_full("sync")


def test_real_disk_full_uring():
    """Disk full on ext4 with the io_uring engine."""
    disk_full("uring")


def test_real_fsfreeze():
    """fsfreeze -f for 4 s under 3 DeadlineProducers (2 s deadline) and a consumer: no request
    invoked after the freeze is acknowledged before the thaw, some end DEADLINE_EXCEEDED, the server
    stays up; health, readiness and liveness are printed (not asserted); after the thaw 150 more
    acks and a clean check."""
    with LoopScenario("realdisk-freeze", "sync") as sc:
        node = sc.node
        prods = [sc.add(dc.DeadlineProducer(node.addr, sc.h, TOPIC, sc.partitions, client=i, deadline_s=2.0))
                 for i in range(3)]
        sc.add(Consumer(node.addr, sc.h, TOPIC, 0, client=9))
        acked = lambda: sum(p.acked() for p in prods)  # noqa: E731
        wait_for("150 acks", lambda: acked() >= 150, timeout=60)
        probes = {}
        t = time.time()
        try:
            node.fs.freeze()
            t_freeze = time.monotonic_ns()  # fsfreeze -f has returned: no write gets through now
            print("  fsfreeze -f took %.2fs" % (time.time() - t), flush=True)
            time.sleep(1.0)
            for svc in ("", "readiness", "liveness"):
                t = time.time()
                probes[svc or '""'] = "%s in %.2fs" % (dc.health(node.addr, svc, timeout=2.0), time.time() - t)
            time.sleep(3.0)  # > the 2 s deadline: calls invoked during the freeze expire
        finally:
            t_thaw = time.monotonic_ns()
            node.fs.thaw()
        print("  health while frozen: %s" % probes)
        ev = dc.produce_events(sc.h, invoked_after=t_freeze)
        false_acks = [e for e in ev if e[1] == "ok" and e[4] < t_thaw]
        codes = outcomes(e for e in ev if e[4] < t_thaw)
        print("  requests invoked and ended while frozen (code: count): %s" % codes)
        assert not false_acks, "acknowledged while the file system was frozen: %s" % false_acks[:5]
        assert codes.get(dc.DEADLINE_EXCEEDED, 0) > 0, codes
        assert node.alive(), "the server died during the freeze"
        t = time.time()
        target = acked() + 150
        wait_for("150 acks after the thaw", lambda: acked() >= target, timeout=60)
        print("  150 acks %.2fs after the thaw" % (time.time() - t))
        sc.stop_clients()
        res = sc.final_check()
        report(res, [p.stats for p in prods], "; codes %s" % [p.codes for p in prods])
        assert res.ok, "history anomalies after the freeze (history %s)" % sc.h.path
        assert node.stop() == 0
        sc.ok = True
        print("  %.1fs" % (time.time() - sc.t0))


if __name__ == "__main__":
    why = skip_reason()
    if why:
        print("skipped: " + why, flush=True)
        sys.exit(sbtest.SKIP)
    tests = [test_real_disk_full_sync, test_real_disk_full_uring, test_real_fsfreeze]
    only = os.environ.get("SB_DISK_ONLY")
    if only:
        tests = [t for t in tests if only in t.__name__]
    sbtest.run_tests(tests)
