# A line echo server for the trust lab tests: "who" answers the server's name, any other line
# comes back as it was. Listens on every port given.
import socket
import sys
import threading

name = sys.argv[1]


def handle(c):
    f = c.makefile("rb")
    try:
        for line in f:
            if line.strip() == b"who":
                c.sendall(name.encode() + b"\n")
            else:
                c.sendall(line)
    except OSError:
        pass
    finally:
        try:
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        c.close()


def serve(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(1024)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


threads = [threading.Thread(target=serve, args=(int(p),), daemon=True) for p in sys.argv[2:]]
for t in threads:
    t.start()
print("listening", flush=True)
for t in threads:
    t.join()
