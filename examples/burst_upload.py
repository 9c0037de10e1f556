"""Paramiko sessions that upload at the same instant, for examples/bench_burst.rs (issue 10).

usage: burst_upload.py PORT USER KEYFILE PATTERN PREFIX COUNT
Opens COUNT sessions (logged in before the burst), then session N uploads the file PATTERN % N
as /inbox/PREFIX-NNN.csv, all at once; prints one JSON line {"uploaded": N, "failed": [...]}.
"""
import json
import sys
import threading

import paramiko


def main():
    port, user, keyfile, path, prefix, count = sys.argv[1:]
    count = int(count)
    key = paramiko.Ed25519Key.from_private_key_file(keyfile)
    sessions = []
    for _ in range(count):
        t = paramiko.Transport(("127.0.0.1", int(port)))
        t.connect(username=user, pkey=key)
        sessions.append((t, paramiko.SFTPClient.from_transport(t)))
    start = threading.Barrier(count)
    failed = []

    def upload(i, sftp):
        data = open(path % i, "rb").read()
        start.wait()
        try:
            with sftp.open("/inbox/%s-%03d.csv" % (prefix, i), "wb") as f:
                f.set_pipelined(True)
                f.write(data)
        except Exception as e:  # noqa: BLE001 - reported, the benchmark goes on
            failed.append("%d: %s" % (i, e))

    threads = [threading.Thread(target=upload, args=(i, s)) for i, (_, s) in enumerate(sessions)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t, s in sessions:
        s.close()
        t.close()
    print(json.dumps({"uploaded": count - len(failed), "failed": failed}))


main()
