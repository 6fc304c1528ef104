# A web server whose behaviour a test changes while it runs, for health-check tests.
# usage: fault_server.py NAME PORT MODEFILE
# MODEFILE holds one word, re-read for every connection:
#   ok      answer 200 with the body NAME
#   500     answer 500
#   hang    accept and never answer
#   reset   accept and reset the connection (RST)
#   slow:S  answer 200 after S seconds
#   flap    alternate ok and 500, switching every second
#   stop    close the listening socket (connections are refused) until the mode changes
import os, socket, struct, sys, threading, time

name, port, modefile = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def mode():
    try:
        with open(modefile) as f:
            return f.read().strip() or "ok"
    except OSError:
        return "ok"

def answer(c, code, body):
    reason = {200: "OK", 500: "Internal Server Error"}[code]
    c.sendall(("HTTP/1.0 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
               % (code, reason, len(body), body)).encode())

def serve(c):
    try:
        c.settimeout(30)
        m = mode()
        if m == "hang":
            time.sleep(30)
            return
        if m == "reset":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                return
            data += chunk
        if m.startswith("slow:"):
            time.sleep(float(m[5:]))
            m = "ok"
        if m == "flap":
            m = "ok" if int(time.time()) % 2 == 0 else "500"
        if m == "500":
            answer(c, 500, "error\n")
        else:
            answer(c, 200, name + "\n")
    except OSError:
        pass
    finally:
        c.close()

def listener():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(128)
    s.settimeout(0.2)
    return s

s = listener()
while True:
    if mode() == "stop":
        if s is not None:
            s.close()
            s = None
        time.sleep(0.1)
        continue
    if s is None:
        s = listener()
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    threading.Thread(target=serve, args=(c,), daemon=True).start()
