"""The VOEvent Transport Protocol (VTP), both ends.

VTP (IVOA note "VOEvent Transport Protocol", the protocol of GCN's VOEvent
streams) runs over TCP. Every message is a *packet*: a 4-byte big-endian
unsigned length followed by that many bytes of XML. The server sends
VOEvents; the client answers each with a Transport message of role
``ack`` (or ``nak``). When idle, the server sends a Transport message of
role ``iamalive`` from time to time and the client answers in kind.

:class:`PacketReader` reads packets with short timeouts so that the loop
around it can check whether it has been asked to stop, without losing a
partly received packet; the other functions build and classify messages.
Parsing is done here once per packet, with a parser that never fetches
anything from the network.
"""

import datetime
import struct

import lxml.etree

#: Packet length prefix: 4-byte big-endian unsigned integer.
LENGTH = struct.Struct('!I')

#: Root tags of Transport messages (the namespaces that peers use).
TRANSPORT_TAGS = frozenset({
    '{http://telescope-networks.org/xml/Transport/v1.1}Transport',
    '{http://telescope-networks.org/schema/Transport/v1.1}Transport',
    '{http://www.telescope-networks.org/xml/Transport/v1.1}Transport'})

#: Root tags of VOEvents.
VOEVENT_TAGS = frozenset({'{http://www.ivoa.net/xml/VOEvent/v1.1}VOEvent',
                          '{http://www.ivoa.net/xml/VOEvent/v2.0}VOEvent'})

_PARSER = lxml.etree.XMLParser(resolve_entities=False, no_network=True,
                               huge_tree=False)


class ProtocolError(Exception):
    """The peer broke the framing: the connection must be dropped."""


class PacketReader:
    """Read length-prefixed packets from a socket.

    Parameters
    ----------
    sock : socket.socket
        A connected socket. Its timeout is changed by :meth:`read`.
    max_size : int
        Largest acceptable payload (bytes). A larger length prefix means
        that the stream is not VTP (or is corrupt) and raises
        :exc:`ProtocolError`.
    """

    def __init__(self, sock, max_size):
        self.sock = sock
        self.max_size = max_size
        self._buffer = bytearray()

    def _take_packet(self):
        if len(self._buffer) < LENGTH.size:
            return None
        size, = LENGTH.unpack_from(self._buffer)
        if size > self.max_size:
            raise ProtocolError(
                f'length prefix announces {size} bytes, more than the '
                f'limit of {self.max_size}: not a VOEvent Transport stream')
        end = LENGTH.size + size
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[LENGTH.size:end])
        del self._buffer[:end]
        return payload

    def read(self, timeout):
        """Return the next payload, or ``None`` if no whole packet arrived
        within `timeout` seconds (bytes received so far are kept).

        Raises :exc:`ConnectionError` when the peer closed the connection
        and :exc:`ProtocolError` on an impossible length prefix.
        """
        packet = self._take_packet()
        if packet is not None:
            return packet
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return None
        if not chunk:
            raise ConnectionError('connection closed by peer')
        self._buffer += chunk
        return self._take_packet()


def send_packet(sock, payload, timeout=30.0):
    """Send `payload` (bytes) as one packet."""
    sock.settimeout(timeout)
    sock.sendall(LENGTH.pack(len(payload)) + payload)


def parse(payload):
    """Parse a packet's payload; raise :exc:`lxml.etree.XMLSyntaxError`
    (with the reason) if it is not well-formed XML."""
    return lxml.etree.fromstring(payload, _PARSER)


def kind(root):
    """Classify a parsed message: ``'voevent'``, the role of a Transport
    message (``'iamalive'``, ``'ack'``, ``'nak'``...), or ``None``."""
    if root.tag in VOEVENT_TAGS:
        return 'voevent'
    if root.tag in TRANSPORT_TAGS:
        return root.get('role')
    return None


def transport_message(role, origin, response=None):
    """Build a Transport message (bytes).

    ``iamalive`` from the server carries its IVORN as `origin`; a client's
    ``iamalive`` reply carries the server's IVORN as `origin` and its own
    as `response`; an ``ack`` carries the VOEvent's IVORN as `origin` and
    the client's as `response`.
    """
    ns = 'http://telescope-networks.org/schema/Transport/v1.1'
    root = lxml.etree.Element(f'{{{ns}}}Transport', nsmap={'trn': ns},
                              role=role, version='1.0')
    lxml.etree.SubElement(root, 'Origin').text = origin
    if response is not None:
        lxml.etree.SubElement(root, 'Response').text = response
    lxml.etree.SubElement(root, 'TimeStamp').text = datetime.datetime.now(
        datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    return lxml.etree.tostring(root, xml_declaration=True, encoding='UTF-8')


def origin(root):
    """The text of a Transport message's ``Origin`` (or ``None``)."""
    element = root.find('Origin')
    return None if element is None else element.text


def describe(payload, limit=60):
    """A short printable description of a payload, for log lines."""
    head = payload[:limit]
    return f'{len(payload)} bytes starting {head!r}'
