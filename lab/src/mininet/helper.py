# lab's Mininet helper: builds a lab's hosts, switches and links with Mininet 2.3's Python API,
# or reads a user's Mininet `Topo` class. Shipped inside the `lab` binary and run as
# `python3 -c <this file> build|topo ...`; it is not meant to be run by hand.
#
#   build   reads one JSON spec line on stdin (hosts, switches, links, addresses, routes),
#           builds it, prints one JSON line {"hosts": {name: pid}, "switches": {name: pid}} and
#           waits for one line on stdin: then (or at EOF, when lab died) it ends the Mininet
#           shells and exits. The network stays: lab has bind-mounted the hosts' namespaces by
#           then, and it removes everything itself, by the names it recorded, never `mn -c`.
#   topo FILE SPEC   imports FILE as `mn --custom FILE` does and prints the Topo that
#           `--topo SPEC` builds (hosts, switches, links with their params) as one JSON line.
#
# Errors: one line on stdout, {"error": "..."}, and exit status 1.

import json
import shutil
import sys


def fail(message):
    print(json.dumps({"error": message}), flush=True)
    sys.exit(1)


def jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    # A class (cls=TCLink) or a partial: its name is what lab can check.
    return {"class": getattr(v, "__name__", None) or type(v).__name__}


def topo(path, spec):
    from mininet.topo import Topo
    from mininet.util import buildTopo

    env = {"__file__": path, "__name__": "custom"}
    try:
        with open(path) as f:
            code = compile(f.read(), path, "exec")
        exec(code, env)
    except OSError as e:
        fail("%s: %s" % (path, e.strerror))
    except SyntaxError as e:
        fail("%s:%s: %s" % (path, e.lineno, e.msg))
    except Exception as e:  # the user's module failed on import
        fail("%s: %s: %s" % (path, type(e).__name__, e))
    topos = env.get("topos")
    if not isinstance(topos, dict) or not topos:
        fail("%s: defines no `topos` dict (mn --custom needs topos = {'name': MyTopo})" % path)
    name = spec.split(",")[0]
    if name not in topos:
        fail("%s: no topology named `%s` in topos (it has: %s)" % (path, name, ", ".join(sorted(topos))))
    try:
        t = buildTopo(topos, spec)
    except Exception as e:
        fail("--topo %s: %s: %s" % (spec, type(e).__name__, e))
    if not isinstance(t, Topo):
        fail("--topo %s: topos['%s'] did not build a mininet.topo.Topo" % (spec, name))
    out = {"hosts": [], "switches": [], "links": []}
    for h in t.hosts(sort=True):
        out["hosts"].append({"name": h, "params": jsonable(t.nodeInfo(h))})
    for s in t.switches(sort=True):
        out["switches"].append({"name": s, "params": jsonable(t.nodeInfo(s))})
    for src, dst, info in t.links(sort=True, withInfo=True):
        info = dict(info)
        out["links"].append({"node1": info.pop("node1", src), "node2": info.pop("node2", dst),
                             "params": jsonable(info)})
    print(json.dumps(out), flush=True)


def build():
    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.node import OVSSwitch
    from mininet.nodelib import LinuxBridge
    from mininet.link import Link, TCIntf

    setLogLevel("error")
    # Mininet.init() raises the machine's limits and sysctls (fixLimits: net.core.rmem_max,
    # gc_thresh, ...): the root namespace must stay as it was, so lab skips it.
    Mininet.inited = True
    spec = json.loads(sys.stdin.readline())

    def run(node, cmd):
        out = node.cmd(cmd).strip()
        if out:
            raise RuntimeError("%s: `%s`: %s" % (node.name, cmd, out.splitlines()[-1]))

    def quiet_ipv6(name):
        # A root-namespace port or bridge must not speak IPv6 (RS, MLD, DAD) into the lab:
        # off before it comes up, as the native switch's ports are.
        with open("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % name, "w") as f:
            f.write("1")

    class LabBridge(LinuxBridge):
        "Mininet's LinuxBridge, quiet as lab's own switch: no IPv6, no multicast snooping."

        def start(self, _controllers):
            run(self, "brctl addbr %s" % self.name)
            quiet_ipv6(self.name)
            with open("/sys/class/net/%s/bridge/multicast_snooping" % self.name, "w") as f:
                f.write("0")
            for i in self.intfList():
                if i.name.startswith(self.name + "-"):
                    run(self, "brctl addif %s %s" % (self.name, i.name))
            run(self, "ip link set %s up" % self.name)

    class LabOVS(OVSSwitch):
        "Open vSwitch in standalone mode: a learning switch, no controller."

        def __init__(self, name, **params):
            OVSSwitch.__init__(self, name, failMode="standalone", **params)

    class StrictTCIntf(TCIntf):
        "TCIntf whose refused tc commands (no sch_netem here) are errors, not warnings."

        def config(self, **params):
            result = TCIntf.config(self, **params)
            for out in result.get("tcoutputs", []) if isinstance(result, dict) else []:
                if out.strip():
                    raise RuntimeError("%s: tc refused %s: %s" % (
                        self.name, ", ".join(k for k in params if k in TC_KEYS), out.strip().splitlines()[-1]))
            return result

    class QuietLink(Link):
        def makeIntfPair(self, intf1, intf2, addr1=None, addr2=None, node1=None, node2=None,
                         deleteIntfs=True):
            Link.makeIntfPair(intf1, intf2, addr1, addr2, node1, node2, deleteIntfs=False)
            for name, node in ((intf1, node1), (intf2, node2)):
                if not node.inNamespace:
                    quiet_ipv6(name)

    class QuietTCLink(QuietLink):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("cls1", StrictTCIntf)
            kwargs.setdefault("cls2", StrictTCIntf)
            QuietLink.__init__(self, *args, **kwargs)

    if spec.get("switch") == "ovs":
        if not shutil.which("ovs-vsctl"):
            fail("Open vSwitch is not installed (apt-get install openvswitch-switch)")
        switch_cls = LabOVS
    else:
        if not shutil.which("brctl"):
            fail("brctl is missing: Mininet's LinuxBridge needs bridge-utils (ci/setup.sh)")
        switch_cls = LabBridge
    net = Mininet(topo=None, switch=switch_cls, controller=None, build=False,
                  autoSetMacs=False, inNamespace=False)
    nodes = {}
    try:
        for h in spec["hosts"]:
            node = net.addHost(h["name"], ip=None)
            nodes[h["name"]] = node
            if not h.get("ipv6"):
                # Before any interface exists, so they inherit it (as lab's native hosts).
                run(node, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                          "net.ipv6.conf.default.disable_ipv6=1")
            run(node, "ip link set lo up")
        for s in spec["switches"]:
            nodes[s["bridge"]] = net.addSwitch(s["bridge"])
        for l in spec["links"]:
            params = dict(l.get("tc") or {})
            cls = QuietTCLink if params else QuietLink
            kw = {}
            if l.get("mac1"):
                kw["addr1"] = l["mac1"]
            if l.get("mac2"):
                kw["addr2"] = l["mac2"]
            link = net.addLink(nodes[l["node1"]], nodes[l["node2"]], cls=cls,
                               intfName1=l["intf1"], intfName2=l["intf2"], **kw, **params)
            if l.get("mtu"):
                for intf in (link.intf1, link.intf2):
                    run(intf.node, "ip link set %s mtu %d" % (intf.name, l["mtu"]))
        for h in spec["hosts"]:
            node = nodes[h["name"]]
            for intf, addrs in h.get("addresses", []):
                for i, cidr in enumerate(addrs):
                    ip, plen = cidr.split("/")
                    if i == 0:
                        node.intf(intf).setIP(ip, int(plen))
                    else:
                        run(node, "ip addr add %s dev %s" % (cidr, intf))
            for cidr in h.get("loopback", []):
                run(node, "ip addr add %s dev lo" % cidr)
            if h.get("default_route"):
                node.setDefaultRoute("via %s" % h["default_route"])
        for s in net.switches:
            s.start([])
    except Exception as e:
        print(json.dumps({"error": str(e)}), flush=True)
        end(net)
        sys.exit(1)
    try:
        print(json.dumps({
            "hosts": {h.name: h.pid for h in net.hosts},
            "switches": {s.name: s.pid for s in net.switches},
        }), flush=True)
        # lab bind-mounts the namespaces, then says so; EOF means lab died meanwhile.
        sys.stdin.readline()
    except BrokenPipeError:
        pass
    end(net)


def end(net):
    "Ends the Mininet shells; the network itself is lab's to remove."
    for n in net.hosts + net.switches:
        try:
            n.terminate()
        except Exception:
            pass


TC_KEYS = ("bw", "delay", "jitter", "loss", "max_queue_size", "speedup", "use_hfsc", "use_tbf",
           "latency_ms", "enable_ecn", "enable_red")

if __name__ == "__main__":
    try:
        import mininet.net  # noqa: F401
    except ImportError:
        fail("Mininet is not installed for %s (install it with `ci/setup.sh`, or "
             "`apt-get install mininet bridge-utils`)" % sys.executable)
    if len(sys.argv) >= 2 and sys.argv[1] == "build":
        build()
    elif len(sys.argv) == 4 and sys.argv[1] == "topo":
        topo(sys.argv[2], sys.argv[3])
    else:
        fail("usage: helper build | helper topo FILE.py NAME[,ARGS]")
