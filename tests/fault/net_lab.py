"""A private test network: one network namespace per node, a client namespace, and a
"switch" namespace holding a bridge, all joined by veth pairs. Nothing is created in the
host's root namespace: every veth is created inside the switch namespace with its peer
moved straight into the node's namespace.

    sbt-<pid>-sw   bridge br0; ports s0, s1, s2 (nodes) and sc (client)
    sbt-<pid>-n<i> eth0 = 10.77.0.<i+1>/24, lo        (streambusd i runs here)
    sbt-<pid>-cl   eth0 = 10.77.0.10/24, lo           (the test's own gRPC clients)

Faults: iptables DROP rules inside a node's namespace (partition(), heal()), and a tc tbf
qdisc on the switch port facing a node (throttle(): limits what the node receives).

The test process moves itself into the client namespace with setns(2) on its main thread
before any other thread exists (enter_client()); every thread created later (grpcio's
included) inherits it, so the whole workload talks to 10.77.0.x natively. `ip netns exec`
from there still reaches the other namespaces (it opens them by name).

Namespaces are deleted by teardown() (called from a finally and from atexit); stale
sbt-<pid>-* namespaces whose pid is dead (a crashed or SIGKILLed earlier run) are deleted
at setup, after stopping the streambusd processes still inside them, by pid.
"""
import atexit
import ctypes
import os
import re
import signal
import subprocess
import time

SUBNET = "10.77.0"
CLIENT_IP = SUBNET + ".10"
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
_STALE = re.compile(r"^sbt-(\d+)-(sw|cl|n\d+)$")


class Unavailable(Exception):
    """The machine cannot build the network (not root, no netns/iptables/tc): skip."""


def run(cmd, check=True, timeout=20):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError("%s -> exit %d: %s" % (" ".join(cmd), p.returncode, p.stdout.strip()))
    return p


def _netns_list():
    p = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _stop_streambusd_in(ns):
    """SIGKILLs, by pid, the streambusd processes still inside namespace ns (ours)."""
    p = run(["ip", "netns", "pids", ns], check=False)
    for tok in p.stdout.split():
        try:
            pid = int(tok)
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except (ValueError, OSError):
            continue
        if os.path.basename(argv0).startswith(b"streambusd"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def clean_stale():
    """Deletes sbt-<pid>-* namespaces left by earlier runs whose process is gone."""
    removed = []
    for ns in _netns_list():
        m = _STALE.match(ns)
        if not m or _pid_alive(int(m.group(1))):
            continue
        _stop_streambusd_in(ns)
        run(["ip", "netns", "del", ns], check=False)
        removed.append(ns)
    return removed


class Lab:
    def __init__(self, nodes=3):
        self.prefix = "sbt-%d" % os.getpid()
        self.n = nodes
        self.sw = self.prefix + "-sw"
        self.cl = self.prefix + "-cl"
        self.ns = ["%s-n%d" % (self.prefix, i) for i in range(nodes)]
        self.ips = ["%s.%d" % (SUBNET, i + 1) for i in range(nodes)]
        self.created = []
        self.throttled = set()
        self._torn_down = False

    # ---- building and removing

    def setup(self):
        if os.geteuid() != 0:
            raise Unavailable("needs root (network namespaces, iptables, tc)")
        for tool in ("ip", "iptables", "tc"):
            if run(["sh", "-c", "command -v " + tool], check=False).returncode != 0:
                raise Unavailable("%s is not installed" % tool)
        stale = clean_stale()
        if stale:
            print("  removed stale namespaces of dead runs: %s" % " ".join(stale), flush=True)
        atexit.register(self.teardown)
        for ns in [self.sw, self.cl] + self.ns:
            p = run(["ip", "netns", "add", ns], check=False)
            if p.returncode != 0:
                raise Unavailable("ip netns add failed: %s" % p.stdout.strip())
            self.created.append(ns)
        sw = ["ip", "netns", "exec", self.sw]
        run(sw + ["ip", "link", "add", "br0", "type", "bridge"])
        run(sw + ["ip", "link", "set", "br0", "up"])
        run(sw + ["ip", "link", "set", "lo", "up"])
        ends = [(ns, "s%d" % i, ip) for i, (ns, ip) in enumerate(zip(self.ns, self.ips))]
        ends.append((self.cl, "sc", CLIENT_IP))
        for ns, port, ip in ends:
            run(sw + ["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(sw + ["ip", "link", "set", port, "master", "br0", "up"])
            x = ["ip", "netns", "exec", ns]
            run(x + ["ip", "addr", "add", ip + "/24", "dev", "eth0"])
            run(x + ["ip", "link", "set", "eth0", "up"])
            run(x + ["ip", "link", "set", "lo", "up"])
        # Probe the fault tools once, so a machine without them skips instead of failing later.
        p = run(self._x(0) + ["iptables", "-A", "INPUT", "-s", "192.0.2.1", "-j", "DROP"], check=False)
        if p.returncode != 0:
            raise Unavailable("iptables does not work in a namespace: %s" % p.stdout.strip())
        run(self._x(0) + ["iptables", "-F"])
        p = run(sw + ["tc", "qdisc", "add", "dev", "s0", "root", "tbf", "rate", "1mbit", "burst", "32kbit",
                      "latency", "400ms"], check=False)
        if p.returncode != 0:
            raise Unavailable("tc tbf does not work: %s" % p.stdout.strip())
        run(sw + ["tc", "qdisc", "del", "dev", "s0", "root"])
        return self

    def teardown(self):
        if self._torn_down:
            return
        self._torn_down = True
        for ns in reversed(self.created):
            _stop_streambusd_in(ns)
            run(["ip", "netns", "del", ns], check=False)
        self.created = []

    def enter_client(self):
        """Moves this process (its main thread, before any other thread exists) into the
        client namespace."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(os.path.join(NETNS_DIR, self.cl), os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, "setns(%s): %s" % (self.cl, os.strerror(e)))
        finally:
            os.close(fd)

    # ---- running things in a node's namespace

    def _x(self, i):
        return ["ip", "netns", "exec", self.ns[i]]

    def exec_prefix(self, i):
        """argv prefix that runs a command in node i's namespace (ip netns exec execs it:
        the Popen's pid is the command's)."""
        return self._x(i)

    # ---- faults

    def partition(self, i, peers, direction="both"):
        """Drops packets between node i and the nodes in peers, inside node i's namespace.
        direction: "both", "in" (peers -> i dropped) or "out" (i -> peers dropped). All rules
        go in at once (iptables-restore --noflush: one transaction), so no peer is cut off
        before another."""
        lines = ["*filter"]
        for j in peers:
            if direction in ("both", "in"):
                lines.append("-A INPUT -s %s -j DROP" % self.ips[j])
            if direction in ("both", "out"):
                lines.append("-A OUTPUT -d %s -j DROP" % self.ips[j])
        lines.append("COMMIT")
        p = subprocess.run(self._x(i) + ["iptables-restore", "--noflush"], input="\n".join(lines) + "\n",
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=20)
        if p.returncode != 0:
            raise RuntimeError("iptables-restore in %s -> exit %d: %s" % (self.ns[i], p.returncode, p.stdout))

    def heal(self, i):
        run(self._x(i) + ["iptables", "-F"])

    def rules(self, i):
        return run(self._x(i) + ["iptables", "-S"]).stdout

    def throttle(self, i, rate="1mbit", burst="32kbit", latency="400ms"):
        """tbf on the switch port facing node i: what node i receives is limited to rate."""
        run(["ip", "netns", "exec", self.sw, "tc", "qdisc", "add", "dev", "s%d" % i, "root", "tbf",
             "rate", rate, "burst", burst, "latency", latency])
        self.throttled.add(i)

    def unthrottle(self, i):
        run(["ip", "netns", "exec", self.sw, "tc", "qdisc", "del", "dev", "s%d" % i, "root"])
        self.throttled.discard(i)

    def qdisc_stats(self, i):
        return run(["ip", "netns", "exec", self.sw, "tc", "-s", "qdisc", "show", "dev", "s%d" % i]).stdout

    def reset_faults(self):
        for i in range(self.n):
            run(self._x(i) + ["iptables", "-F"], check=False)
        for i in list(self.throttled):
            run(["ip", "netns", "exec", self.sw, "tc", "qdisc", "del", "dev", "s%d" % i, "root"], check=False)
        self.throttled.clear()


def wait_exec(pid, binary, timeout=10):
    """Waits until pid runs binary (ip netns exec has exec'd it); True if it does."""
    want = os.path.realpath(binary)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if os.path.realpath("/proc/%d/exe" % pid) == want:
                return True
        except OSError:
            return False
        time.sleep(0.01)
    return False
