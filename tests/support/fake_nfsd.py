"""A stand-in for ganesha in the supervisor's tests: a TCP server of RPC-framed records.

``fake_nfsd.py -f CONFIG``: listens where the configuration says (NFS_Port, Bind_Addr) and
answers every record with one record: ``RO <request>`` or ``RW <request>`` after its access
type, so a test sees which configuration answers. Real processes, real sockets: only the
protocol is not NFS.
"""

import re
import socket
import struct
import sys
import threading
from pathlib import Path


def record(data: bytes) -> bytes:
    return struct.pack(">I", 0x80000000 | len(data)) + data


def serve(connection: socket.socket, access: bytes) -> None:
    with connection:
        while True:
            header = connection.recv(4, socket.MSG_WAITALL)
            if len(header) < 4:
                return
            size = struct.unpack(">I", header)[0] & 0x7FFFFFFF
            body = connection.recv(size, socket.MSG_WAITALL)
            connection.sendall(record(access + b" " + body))


def main() -> None:
    config = Path(sys.argv[sys.argv.index("-f") + 1]).read_text()
    port = int(re.search(r"NFS_Port\s*=\s*(\d+)", config).group(1))
    bind = re.search(r"Bind_Addr\s*=\s*([^;\s]+)", config)
    access = b"RO" if re.search(r"CLIENT\s*\{[^}]*Access_Type\s*=\s*RO", config) else b"RW"
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((bind.group(1) if bind else "", port))
    listener.listen(16)
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=serve, args=(connection, access), daemon=True).start()


if __name__ == "__main__":
    main()
