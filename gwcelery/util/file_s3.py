"""A small S3-compatible HTTP server that keeps each object in a file.

The storage of the private Kafka broker (:mod:`.kafka_broker`), whose
build of Tansu keeps data in memory or in S3 only: this S3 is the local
disk. It needs the standard library only, so :mod:`.kafka_broker` runs
the file isolated, without the seconds of importing ``gwcelery``::

    python -I gwcelery/util/file_s3.py --port PORT --root DIR --bucket NAME

It serves what Tansu's S3 client (the Rust ``object_store`` crate) asks
for, path-style, on one host: GET and HEAD (whole objects, conditional
on ``If-None-Match``), PUT (conditional on ``If-Match`` or
``If-None-Match: *``), DELETE, ListObjectsV2 (in one page) and the
multi-object delete; no multipart uploads, copies or byte ranges. It
checks no credentials: bind it to 127.0.0.1.

Object ``a/b/c`` of bucket ``B`` is the file ``ROOT/B/a@/b@/c``, each
segment percent-encoded: a directory name ends in ``@``, which encoding
never leaves at the end of a segment, so that the objects ``a`` and
``a/b`` can both exist. A write goes to a temporary file, renamed over
the object: a reader, or a kill at any moment, sees the old or the new
content, never a part.
"""

import argparse
import email.utils
import hashlib
import os
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.etree import ElementTree
from xml.sax.saxutils import escape

#: Suffix of a directory that holds the objects under one key segment.
DIR_SUFFIX = '@'

#: Prefix of temporary files; no object file name contains ``@``.
TMP_PREFIX = '@tmp.'

_XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/'


class S3Error(Exception):
    """An S3 error reply: HTTP status, S3 error code, message."""

    def __init__(self, status, code, message=''):
        super().__init__(message or code)
        self.status = status
        self.code = code


def _segment_names(key):
    """The encoded file-system names of the segments of `key`."""
    segments = key.split('/')
    if any(segment in ('', '.', '..') for segment in segments):
        raise S3Error(400, 'InvalidArgument', f'unsupported key {key!r}')
    return [urllib.parse.quote(segment, safe='') for segment in segments]


def etag_of(data):
    """The quoted ETag of an object's content, as S3 gives it."""
    return f'"{hashlib.md5(data).hexdigest()}"'


def _same_etag(header, etag):
    return header.strip().removeprefix('W/') == etag


class FileStore:
    """Objects of buckets in the directory `root`, one file each."""

    def __init__(self, root):
        self.root = root
        # One writer at a time: a conditional write checks, then renames;
        # a delete removes the directories that it leaves empty.
        self._write_lock = threading.Lock()
        # path: (mtime_ns, size, ETag), so that a listing of many objects
        # does not read them all.
        self._etags = {}

    def bucket_dir(self, bucket):
        """The directory of `bucket` (which must be a plain name)."""
        return os.path.join(self.root, _segment_names(bucket)[0])

    def create_bucket(self, bucket):
        os.makedirs(self.bucket_dir(bucket), exist_ok=True)

    def _path(self, bucket, key):
        top = self.bucket_dir(bucket)
        if not os.path.isdir(top):
            raise S3Error(404, 'NoSuchBucket', bucket)
        names = _segment_names(key)
        dirs = [name + DIR_SUFFIX for name in names[:-1]]
        return os.path.join(top, *dirs, names[-1])

    def read(self, bucket, key):
        """Return (content, modification time) of an object."""
        path = self._path(bucket, key)
        try:
            with open(path, 'rb') as f:
                return f.read(), os.fstat(f.fileno()).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            raise S3Error(404, 'NoSuchKey', key) from None

    def describe(self, bucket, key):
        """Return (size, modification time, ETag) of an object."""
        path = self._path(bucket, key)
        try:
            stat = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise S3Error(404, 'NoSuchKey', key) from None
        version = (stat.st_mtime_ns, stat.st_size)
        cached = self._etags.get(path)
        if cached is None or cached[:2] != version:
            etag = etag_of(self.read(bucket, key)[0])
            # Stale if rewritten meanwhile: its version differs then.
            self._etags[path] = cached = (*version, etag)
        return stat.st_size, stat.st_mtime, cached[2]

    def write(self, bucket, key, data, if_match=None, if_none_match=None):
        """Store an object, if the conditions hold; return its ETag."""
        path = self._path(bucket, key)
        with self._write_lock:
            self._check_conditions(bucket, key, if_match, if_none_match)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX,
                                       dir=os.path.dirname(path))
            try:
                with os.fdopen(fd, 'wb') as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                _remove(tmp)
                raise
        return etag_of(data)

    def _check_conditions(self, bucket, key, if_match, if_none_match):
        if if_match is None and if_none_match is None:
            return
        try:
            etag = etag_of(self.read(bucket, key)[0])
        except S3Error:
            if if_match is not None:
                raise
            return
        if if_none_match is not None or not _same_etag(if_match, etag):
            raise S3Error(412, 'PreconditionFailed', key)

    def delete(self, bucket, key):
        """Remove an object (none is no error), and emptied directories."""
        path = self._path(bucket, key)
        top = self.bucket_dir(bucket)
        with self._write_lock:
            _remove(path)
            self._etags.pop(path, None)
            parent = os.path.dirname(path)
            while parent != top:
                try:
                    os.rmdir(parent)
                except OSError:  # not empty
                    break
                parent = os.path.dirname(parent)

    def list(self, bucket, prefix='', delimiter=None):
        """Return (keys, common prefixes) under `prefix`, each sorted."""
        base, _, _ = prefix.rpartition('/')
        try:
            start = (os.path.dirname(self._path(bucket, base + '/x'))
                     if base else self.bucket_dir(bucket))
        except S3Error as error:
            if error.code == 'NoSuchBucket':
                raise
            return [], []
        keys, prefixes = [], set()
        for key in _walk(start, base + '/' if base else '', prefix,
                         delimiter):
            rest = key[len(prefix):]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] +
                             delimiter)
            else:
                keys.append(key)
        return sorted(keys), sorted(prefixes)


def _walk(directory, key_prefix, prefix, delimiter):
    """The keys under `directory` (whose keys start with `key_prefix`)
    that start with `prefix`; with the delimiter ``/``, a directory
    wholly under `prefix` is given as its key prefix, unexplored."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith(TMP_PREFIX):
            continue
        if not entry.name.endswith(DIR_SUFFIX):
            key = key_prefix + urllib.parse.unquote(entry.name)
            if key.startswith(prefix):
                yield key
            continue
        name = urllib.parse.unquote(entry.name[:-len(DIR_SUFFIX)])
        sub = f'{key_prefix}{name}/'
        if delimiter == '/' and sub.startswith(prefix):
            yield sub  # a common prefix, as its rest holds the delimiter
        elif sub.startswith(prefix) or prefix.startswith(sub):
            yield from _walk(entry.path, sub, prefix, delimiter)


def _remove(path):
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass


def _iso_time(timestamp):
    return time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime(timestamp))


def list_result_xml(store, bucket, prefix, keys, prefixes):
    """The ListObjectsV2 reply for `keys` and common `prefixes`."""
    parts = [f'<ListBucketResult xmlns="{_XMLNS}">',
             f'<Name>{escape(bucket)}</Name>',
             f'<Prefix>{escape(prefix)}</Prefix>',
             f'<KeyCount>{len(keys) + len(prefixes)}</KeyCount>',
             '<IsTruncated>false</IsTruncated>']
    for key in keys:
        try:
            size, mtime, etag = store.describe(bucket, key)
        except S3Error:  # deleted meanwhile
            continue
        parts.append(
            f'<Contents><Key>{escape(key)}</Key>'
            f'<LastModified>{_iso_time(mtime)}</LastModified>'
            f'<ETag>{escape(etag)}</ETag><Size>{size}</Size>'
            '<StorageClass>STANDARD</StorageClass></Contents>')
    for common in prefixes:
        parts.append(f'<CommonPrefixes><Prefix>{escape(common)}</Prefix>'
                     '</CommonPrefixes>')
    parts.append('</ListBucketResult>')
    return ''.join(parts).encode()


def _delete_result_xml(keys):
    deleted = ''.join(f'<Deleted><Key>{escape(key)}</Key></Deleted>'
                      for key in keys)
    return f'<DeleteResult xmlns="{_XMLNS}">{deleted}</DeleteResult>'.encode()


def _keys_to_delete(body):
    """The keys of a multi-object delete request."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise S3Error(400, 'MalformedXML') from None
    return [element.text or '' for element in root.iter()
            if element.tag.rsplit('}', 1)[-1] == 'Key']


class S3Handler(BaseHTTPRequestHandler):
    """One request to the :class:`FileStore` of the server."""

    # Keep-alive, as the client expects: every reply has a length.
    protocol_version = 'HTTP/1.1'
    server_version = 'gwcelery-file-s3'

    @property
    def store(self):
        return self.server.store

    def _target(self):
        """(bucket, key, query) of the request; key '' for the bucket."""
        url = urllib.parse.urlsplit(self.path)
        bucket, _, key = url.path.lstrip('/').partition('/')
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        return (urllib.parse.unquote(bucket), urllib.parse.unquote(key),
                {name: values[0] for name, values in query.items()})

    def _body(self):
        if 'chunked' in self.headers.get('Transfer-Encoding', ''):
            self.close_connection = True  # the body stays unread
            raise S3Error(501, 'NotImplemented', 'chunked transfer encoding')
        return self.rfile.read(int(self.headers.get('Content-Length', 0)))

    def _reply(self, status, body=b'', headers=(), send_body=True):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _handle(self, method):
        try:
            method()
        except OSError as error:  # the disk: the client will retry
            self.log_error('%s %s: %r', self.command, self.path, error)
            self.close_connection = True  # maybe with a body unread
            self._reply(500, b'<Error><Code>InternalError</Code></Error>',
                        [('Content-Type', 'application/xml')],
                        send_body=self.command != 'HEAD')
        except S3Error as error:
            body = (f'<Error><Code>{error.code}</Code>'
                    f'<Message>{escape(str(error))}</Message></Error>')
            self._reply(error.status, body.encode(),
                        [('Content-Type', 'application/xml')],
                        send_body=self.command != 'HEAD')

    def do_GET(self):
        self._handle(lambda: self._get(send_body=True))

    def do_HEAD(self):
        self._handle(lambda: self._get(send_body=False))

    def do_PUT(self):
        self._handle(self._put)

    def do_DELETE(self):
        self._handle(self._delete)

    def do_POST(self):
        self._handle(self._post)

    def _get(self, send_body):
        bucket, key, query = self._target()
        if not key:
            return self._get_bucket(bucket, query, send_body)
        data, mtime = self.store.read(bucket, key)
        etag = etag_of(data)
        headers = [('ETag', etag), ('Content-Type', 'binary/octet-stream'),
                   ('Last-Modified', email.utils.formatdate(mtime,
                                                            usegmt=True))]
        if 'Range' in self.headers:  # Tansu reads whole objects
            raise S3Error(501, 'NotImplemented', 'byte ranges')
        if_match = self.headers.get('If-Match')
        if if_match and not _same_etag(if_match, etag):
            raise S3Error(412, 'PreconditionFailed', key)
        if_none_match = self.headers.get('If-None-Match')
        if if_none_match and _same_etag(if_none_match, etag):
            return self._reply(304, headers=headers, send_body=False)
        self._reply(200, data, headers, send_body)

    def _get_bucket(self, bucket, query, send_body):
        if not os.path.isdir(self.store.bucket_dir(bucket)):
            raise S3Error(404, 'NoSuchBucket', bucket)
        if 'list-type' not in query:  # HEAD bucket, or a plain GET
            return self._reply(200, send_body=send_body)
        prefix = query.get('prefix', '')
        keys, prefixes = self.store.list(bucket, prefix,
                                         query.get('delimiter') or None)
        body = list_result_xml(self.store, bucket, prefix, keys, prefixes)
        self._reply(200, body, [('Content-Type', 'application/xml')],
                    send_body)

    def _put(self):
        bucket, key, query = self._target()
        body = self._body()
        if not key:
            self.store.create_bucket(bucket)
            return self._reply(200)
        if 'x-amz-copy-source' in self.headers or 'uploadId' in query:
            raise S3Error(501, 'NotImplemented', 'copy and multipart upload')
        etag = self.store.write(bucket, key, body,
                                if_match=self.headers.get('If-Match'),
                                if_none_match=self.headers.get(
                                    'If-None-Match'))
        self._reply(200, headers=[('ETag', etag)])

    def _delete(self):
        bucket, key, _ = self._target()
        if not key:
            raise S3Error(501, 'NotImplemented', 'bucket deletion')
        self.store.delete(bucket, key)
        self._reply(204)

    def _post(self):
        bucket, key, query = self._target()
        body = self._body()
        if key or 'delete' not in query:
            raise S3Error(501, 'NotImplemented', 'multipart upload')
        keys = _keys_to_delete(body)
        for name in keys:
            self.store.delete(bucket, name)
        self._reply(200, _delete_result_xml(keys),
                    [('Content-Type', 'application/xml')])

    def log_request(self, code='-', size='-'):
        # Tansu makes a few requests per message: logging each would fill
        # the disk. Errors are still logged (log_error).
        pass


class FileS3Server(ThreadingHTTPServer):
    """The HTTP server of a :class:`FileStore`."""

    daemon_threads = True

    def __init__(self, address, store):
        super().__init__(address, S3Handler)
        self.store = store


def main(argv=None):
    """Serve the objects of ``--root`` until killed."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--root', required=True,
                        help='directory of the buckets')
    parser.add_argument('--bucket', action='append', default=[],
                        help='create this bucket if need be')
    args = parser.parse_args(argv)
    store = FileStore(args.root)
    for bucket in args.bucket:
        store.create_bucket(bucket)
    with FileS3Server((args.host, args.port), store) as server:
        server.serve_forever()


if __name__ == '__main__':
    main()
