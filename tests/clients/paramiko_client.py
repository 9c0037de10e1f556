"""Python paramiko as a gateway client, for the integration tests (tests/it/sftp.rs).

usage: paramiko_client.py PORT USER AUTH COMMAND ARGS...
AUTH is a private key file, or "password:SECRET". Prints one JSON line; exit 0 unless it crashed.
GATEWAY_SOURCE_ADDR, when set, is the local address connections come from (e.g. 127.0.0.2).
"""
import json
import os
import socket
import struct
import sys
import threading
import time

import paramiko


def transport(port):
    source = os.environ.get("GATEWAY_SOURCE_ADDR")
    if not source:
        return paramiko.Transport(("127.0.0.1", int(port)))
    sock = socket.create_connection(("127.0.0.1", int(port)), source_address=(source, 0))
    return paramiko.Transport(sock)


def login(port, user, auth):
    t = transport(port)
    if auth.startswith("password:"):
        t.connect(username=user, password=auth[len("password:"):])
    else:
        t.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(auth))
    return t


def connect(port, user, auth):
    t = login(port, user, auth)
    return t, paramiko.SFTPClient.from_transport(t)


def refused(f):
    """Runs f; 'ALLOWED' if it worked, else the error the server gave."""
    try:
        r = f()
        return "ALLOWED" if r is None else "ALLOWED: %r" % (r,)
    except (IOError, OSError) as e:
        return "refused: %s" % e


def main():
    port, user, auth, cmd, *args = sys.argv[1:]
    if cmd == "login":
        try:
            t, s = connect(port, user, auth)
            s.listdir("/")
            t.close()
            print(json.dumps("ok"))
        except paramiko.AuthenticationException as e:
            print(json.dumps("refused: %s" % e))
        return
    if cmd == "methods":
        # The authentication methods the server offers, as a client's first "none" attempt learns them.
        t = transport(port)
        t.start_client()
        try:
            t.auth_none(user)
            print(json.dumps("none accepted"))
        except paramiko.BadAuthenticationType as e:
            print(json.dumps(sorted(e.allowed_types)))
        t.close()
        return
    if cmd == "grace":
        # Never logs in; sends SSH_MSG_IGNORE every second after the key exchange. How long until the
        # server drops it (up to LIMIT seconds)?
        limit = float(args[0])
        start = time.time()
        t = transport(port)
        t.start_client(timeout=10)
        last = 0.0
        while t.is_active() and time.time() - start < limit:
            if time.time() - last >= 1:
                try:
                    t.send_ignore(16)
                except Exception:  # noqa: BLE001 - the server closed it
                    break
                last = time.time()
            time.sleep(0.05)
        print(json.dumps({"dropped": not t.is_active(), "after": time.time() - start}))
        return
    if cmd == "preinit":
        # A raw SFTP channel that sends OPEN (for writing) without INIT: what comes back?
        t = login(port, user, auth)
        chan = t.open_session()
        chan.invoke_subsystem("sftp")
        name = b"/inbox/preinit.part"
        body = struct.pack(">BI", 3, 1) + struct.pack(">I", len(name)) + name + struct.pack(">II", 0x1A, 0)
        chan.sendall(struct.pack(">I", len(body)) + body)
        head = b""
        while len(head) < 5:
            head += chan.recv(5 - len(head))
        length, kind = struct.unpack(">IB", head)
        rest = b""
        while len(rest) < length - 1:
            rest += chan.recv(length - 1 - len(rest))
        print(json.dumps({101: "status", 102: "handle"}.get(kind, str(kind))))
        t.close()
        return
    if cmd == "load":
        n, local = int(args[0]), args[1]
        errors = []

        def one(i):
            try:
                t, s = connect(port, user, auth)
                s.put(local, "/inbox/load-%02d.csv" % i)
                t.close()
            except Exception as e:  # noqa: BLE001 - reported to the test
                errors.append("%d: %r" % (i, e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        print(json.dumps({"errors": errors}))
        return
    t, s = connect(port, user, auth)
    if cmd == "put":
        s.put(args[0], args[1])
        print(json.dumps("ok"))
    elif cmd == "tryput":
        # Uploads each LOCAL REMOTE pair in turn; the outcome of each (the server's message when refused).
        pairs = list(zip(args[0::2], args[1::2]))
        print(json.dumps([refused(lambda l=l, r=r: s.put(l, r) and None) for l, r in pairs]))
    elif cmd == "twowriters":
        # A second session opening a name the first is still writing.
        remote = args[0]
        first = s.open(remote, "wb")
        first.write(b"VisitRef\n")
        t2, s2 = connect(port, user, auth)
        second = refused(lambda: s2.open(remote, "wb").close())
        first.close()
        t2.close()
        print(json.dumps({"second": second}))
    elif cmd == "reopen":
        # The same session opening a name it is still writing.
        remote = args[0]
        first = s.open(remote, "wb")
        first.write(b"VisitRef\n")
        second = refused(lambda: s.open(remote, "wb").close())
        first.close()
        print(json.dumps({"second": second}))
    elif cmd == "handles":
        # Fills the session's handles with reads of READABLE, then tries N uploads beyond the limit.
        readable, n = args[0], int(args[1])
        held = []
        try:
            while True:
                held.append(s.open(readable, "rb"))
        except IOError as e:
            first = str(e)
        outcomes = [refused(lambda i=i: s.open("/inbox/over-%03d.part" % i, "wb").close()) for i in range(n)]
        print(json.dumps({"held": len(held), "first": first, "refused": sum(o.startswith("refused") for o in outcomes), "last": outcomes[-1]}))
    elif cmd == "holdupload":
        # Writes half the file and keeps the upload open until killed.
        local, remote = args
        data = open(local, "rb").read()
        f = s.open(remote, "wb")
        f.write(data[: len(data) // 2])
        f.flush()
        print("holding", flush=True)
        time.sleep(600)
    elif cmd == "afterremoval":
        # Writes an upload and holds it open; once a line arrives on stdin (the login removed
        # meanwhile), closes it and tries a listing and another upload.
        local, remote, second = args
        f = s.open(remote, "wb")
        f.write(open(local, "rb").read())
        f.flush()
        print("holding", flush=True)
        sys.stdin.readline()
        f.close()
        print(json.dumps({
            "held": refused(lambda: s.stat(remote) and None),
            "list": refused(lambda: s.listdir("/results") and None),
            "put": refused(lambda: s.put(local, second) and None),
        }))
    elif cmd == "count":
        print(json.dumps(len(s.listdir(args[0]))))
    elif cmd == "get":
        s.get(args[0], args[1])
        print(json.dumps("ok"))
    elif cmd == "hold":
        # Keeps the session open for a while (for the session limits).
        print("holding", flush=True)
        time.sleep(float(args[0]))
        print(json.dumps("ok"))
    elif cmd == "winscp":
        # WinSCP: upload under NAME.filepart, set the time, rename to NAME.
        local, remote = args
        s.put(local, remote + ".filepart")
        s.utime(remote + ".filepart", (1_600_000_000, 1_600_000_000))
        s.rename(remote + ".filepart", remote)
        print(json.dumps("ok"))
    elif cmd == "halfway":
        # Writes half the file and dies without closing it: a broken-off upload.
        local, remote = args
        data = open(local, "rb").read()
        f = s.open(remote, "wb")
        f.write(data[: len(data) // 2])
        f.flush()
        os._exit(3)
    elif cmd == "attack":
        # Everything a login of another organisation might try; each must be refused.
        victim = args[0]
        tries = {
            "list ../victim/inbox": lambda: s.listdir("../%s/inbox" % victim),
            "list /../../orgs/victim/results": lambda: s.listdir("/../../orgs/%s/results" % victim),
            "list /results/../../victim/results": lambda: s.listdir("/results/../../%s/results" % victim),
            "read victim result by ..": lambda: s.open("/results/../../%s/results/visits-week.result.json" % victim).read(),
            "read victim result by absolute host path": lambda: s.open(os.environ["VICTIM_RESULT"]).read(),
            "read /etc/passwd": lambda: s.open("/etc/passwd").read(),
            "read ../../../../etc/passwd": lambda: s.open("../../../../etc/passwd").read(),
            "read planted link": lambda: s.open("/results/link.result.json").read(),
            "stat planted link": lambda: s.stat("/results/link.result.json"),
            "write into victim inbox": lambda: s.open("/inbox/../../%s/inbox/x.csv" % victim, "wb").write(b"x"),
            "write into /results": lambda: s.open("/results/x.csv", "wb").write(b"x"),
            "write into /exports": lambda: s.open("/exports/x.csv", "wb").write(b"x"),
            "write at root": lambda: s.open("/x.csv", "wb").write(b"x"),
            "remove victim result": lambda: s.remove("/../%s/results/visits-week.result.json" % victim),
            "remove own result": lambda: s.remove("/results/visits-week.result.json"),
            "rename own pending into victim inbox": lambda: s.rename("/inbox/mine.part", "/inbox/../../%s/inbox/x.csv" % victim),
            "rename own pending into /results": lambda: s.rename("/inbox/mine.part", "/results/x.csv"),
            "symlink to victim": lambda: s.symlink("/../%s/results/visits-week.result.json" % victim, "/inbox/l"),
            "mkdir": lambda: s.mkdir("/inbox/sub"),
            "rmdir results": lambda: s.rmdir("/results"),
        }
        s.open("/inbox/mine.part", "wb").write(b"pending")
        out = {name: refused(f) for name, f in tries.items()}
        out["own root listing"] = sorted(s.listdir("/"))
        out["own results listing"] = sorted(s.listdir("/results"))
        print(json.dumps(out))
    else:
        raise SystemExit("unknown command " + cmd)
    t.close()


main()
