"""The ports of a deployment just stopped are free for the next start."""

import socket

from gwcelery.tools.local import HOST, port_is_free


def test_a_port_whose_connections_wait_in_time_wait_is_free():
    server = socket.create_server((HOST, 0))
    port = server.getsockname()[1]
    client = socket.create_connection((HOST, port))
    accepted, _ = server.accept()
    assert not port_is_free(port)  # listening
    accepted.close()  # the server closes first: its side in TIME_WAIT
    client.close()
    server.close()
    assert port_is_free(port)
    again = socket.create_server((HOST, port))  # as the servers bind
    again.close()
