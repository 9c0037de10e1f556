"""Raw TCP connections that never speak SSH, for the flood tests (tests/it/sftp.rs).

usage: flood.py PORT COUNT SOURCE
Opens COUNT connections to 127.0.0.1:PORT from the local address SOURCE, prints "open N" (how many
connected), then holds them until its standard input closes.
"""
import socket
import sys


def main():
    port, count, source = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    held = []
    for _ in range(count):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=1, source_address=(source, 0)))
        except OSError:
            pass
    print("open %d" % len(held), flush=True)
    sys.stdin.read()
    for s in held:
        s.close()


main()
