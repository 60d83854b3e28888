#!/usr/bin/python3
"""faultfsctl.py - start, command and stop faultfs (the fault-injecting FUSE
passthrough in this folder) from Python tests, or send one command by hand.

    from faultfsctl import FaultFS
    with FaultFS(binary, backing_dir, mountpoint) as fs:
        ...                      # use files under mountpoint
        fs.fsync_eio(True)       # os.fsync on the mount now raises EIO
        fs.powerloss(); fs.revive()

CLI:  faultfsctl.py SOCKET COMMAND [ARG]    e.g. faultfsctl.py /tmp/ctl.sock status

The mount is always taken down: stop() (also run by the context manager and
at interpreter exit) thaws, unmounts with `fusermount3 -u` (then `-u -z`),
and kills the process by pid. faultfs is started with `-o auto_unmount` and
is SIGKILLed by the kernel when the thread that started it dies
(PR_SET_PDEATHSIG), so even a SIGKILLed test leaves no stale mount behind.
Start FaultFS from a thread that lives as long as the mount should.
"""
import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

DEFAULT_TIMEOUT_S = 10.0
REPLY_MAX_BYTES = 4096


class FaultFSError(Exception):
    """A command answered `err ...`, or faultfs failed to start."""


def _unescape_mountinfo(field):
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def is_mounted(mountpoint):
    """True when mountpoint is the mount point of a FUSE mount right now."""
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 5 or _unescape_mountinfo(fields[4]) != target:
                continue
            sep = fields.index("-") if "-" in fields else -1
            if sep >= 0 and sep + 1 < len(fields) and fields[sep + 1].startswith("fuse"):
                return True
    return False


def send_command(sock_path, line, timeout=DEFAULT_TIMEOUT_S):
    """Sends one command line to the control socket; returns the answer line
    (without newline). Raises FaultFSError on `err ...`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(line.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(REPLY_MAX_BYTES)
            if not chunk:
                break
            buf += chunk
            if len(buf) > REPLY_MAX_BYTES:
                raise FaultFSError("reply too long")
    reply = buf.decode().strip()
    if not reply.startswith("ok"):
        raise FaultFSError("%s: %s" % (line, reply or "no reply"))
    return reply


def _die_with_parent():
    # Runs in the child before exec: SIGKILL faultfs when the thread that
    # started it dies (e.g. a SIGKILLed test), so auto_unmount's helper takes
    # the mount down. SIGKILL, not SIGTERM: a frozen faultfs could not exit.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class FaultFS:
    """One faultfs process: mounts backing at mountpoint, control socket at
    ctl (default: next to the mountpoint)."""

    def __init__(self, binary, backing, mountpoint, ctl=None, log_path=None,
                 extra_args=(), timeout=DEFAULT_TIMEOUT_S):
        self.binary = binary
        self.backing = os.path.abspath(backing)
        self.mountpoint = os.path.abspath(mountpoint)
        self.ctl = ctl or self.mountpoint.rstrip("/") + ".ctl"
        self.log_path = log_path or self.mountpoint.rstrip("/") + ".log"
        self.extra_args = list(extra_args)
        self.timeout = timeout
        self.proc = None
        self.returncode = None
        self._log = None

    # ---- lifecycle ----
    def start(self):
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.mountpoint, exist_ok=True)
        if is_mounted(self.mountpoint):
            raise FaultFSError("%s is already a mount point" % self.mountpoint)
        self._log = open(self.log_path, "ab")
        cmd = [self.binary, self.backing, self.mountpoint, "--ctl", self.ctl, "-f",
               "-o", "auto_unmount"] + self.extra_args
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise FaultFSError("faultfs exited with %s; log: %s\n%s"
                                   % (self.proc.returncode, self.log_path, self.log_tail()))
            if is_mounted(self.mountpoint):
                try:
                    send_command(self.ctl, "ping", timeout=1.0)
                    return self
                except OSError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise FaultFSError("faultfs did not mount %s within %.0fs" % (self.mountpoint, self.timeout))

    def stop(self):
        """Thaws, unmounts and ends the process; safe to call twice. Returns
        the exit status of faultfs (None if it was never started)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                send_command(self.ctl, "reset", timeout=2.0)  # a frozen fs would block umount
            except (OSError, FaultFSError):
                pass
        if is_mounted(self.mountpoint):
            if subprocess.run(["fusermount3", "-u", self.mountpoint], stderr=subprocess.DEVNULL,
                              timeout=30).returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", self.mountpoint],
                               stderr=subprocess.DEVNULL, timeout=30)
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.returncode = self.proc.returncode
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if is_mounted(self.mountpoint):  # auto_unmount's helper should get it
            subprocess.run(["fusermount3", "-u", "-z", self.mountpoint],
                           stderr=subprocess.DEVNULL, timeout=30)
        atexit.unregister(self.stop)
        return self.returncode

    def kill(self):
        """SIGKILLs faultfs without unmounting (to test stale-mount cleanup)."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def log_tail(self, n=20):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # ---- commands ----
    def command(self, line):
        return send_command(self.ctl, line, timeout=self.timeout)

    def fsync_eio(self, on):
        return self.command("fsync_eio %s" % ("on" if on else "off"))

    def enospc_after(self, nbytes):
        return self.command("enospc_after %d" % nbytes)

    def delay_ms(self, ms):
        return self.command("delay_ms %d" % ms)

    def freeze(self):
        return self.command("freeze")

    def thaw(self):
        return self.command("thaw")

    def powerloss(self):
        return self.command("powerloss")

    def revive(self):
        return self.command("revive")

    def reset(self):
        return self.command("reset")

    def status(self):
        """The status counters as a dict of ints."""
        reply = self.command("status")
        return {k: int(v) for k, v in (kv.split("=", 1) for kv in reply.split()[1:])}


def main(argv):
    if len(argv) < 3:
        sys.stderr.write("usage: faultfsctl.py SOCKET COMMAND [ARG]\n")
        return 2
    try:
        print(send_command(argv[1], " ".join(argv[2:])))
    except (OSError, FaultFSError) as e:
        sys.stderr.write("faultfsctl: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
