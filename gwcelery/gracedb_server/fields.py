"""Reading a request: its body fields and uploaded files, and their
parsing into the typed values the store takes (a 400 where a field cannot
be read)."""

import json

from flask import request

from .errors import ApiError, bad_request
from .identifiers import CATEGORIES


class RequestFields:
    """The fields of a form, multipart or JSON request body.

    :meth:`getlist` accepts the three spellings of a list: repeated keys,
    a JSON array, or a comma-separated string.
    """

    def __init__(self):
        self.json = None
        if request.mimetype == 'application/json':
            data = request.get_data()
            try:
                self.json = json.loads(data) if data.strip() else {}
            except ValueError:
                raise ApiError(400, 'JSON parse error') from None
            if not isinstance(self.json, dict):
                raise ApiError(400, 'Expected a JSON object')

    def __contains__(self, name):
        if self.json is not None:
            return name in self.json
        return name in request.form

    def get(self, name, default=None):
        """The value of a field (``default`` if absent)."""
        if self.json is not None:
            return self.json.get(name, default)
        return request.form.get(name, default)

    def getlist(self, name):
        """The values of a list field (``[]`` if absent), as strings."""
        if self.json is not None:
            values = self.json.get(name)
            if values is None:
                return []
            if isinstance(values, (list, tuple)):
                return [str(v) for v in values]
            return _split_list(str(values))
        values = request.form.getlist(name)
        if len(values) == 1:
            return _split_list(values[0])
        return [v for v in values if v != '']

    def required(self, name):
        """The value of a field that must be given; 400 if it is empty."""
        value = self.get(name)
        if not value:
            raise bad_request(f'{name}: This field is required.')
        return value


def _split_list(text):
    text = text.strip()
    if text.startswith('['):
        try:
            values = json.loads(text)
        except ValueError:
            values = None
        if isinstance(values, list):
            return [str(v) for v in values]
    return [item.strip() for item in text.split(',') if item.strip()]


def uploaded_file(name):
    """``(filename, bytes)`` of an uploaded file part, or ``(None, None)``."""
    part = request.files.get(name)
    if part is None:
        return None, None
    return part.filename, part.read()


def to_float(value, name, required=True):
    """Read a float field of a request; 400 if it is not a number."""
    if value is None or value == '':
        if required:
            raise bad_request(f'{name}: This field is required.')
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise bad_request(f'{name}: A valid number is required.') from None


def optional_float(value):
    """Read a float field that may be empty (``None``); 400 if it is not a
    number."""
    if value is None or value == '':
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise bad_request(f'A valid number is required, not {value!r}') \
            from None


def to_bool(value):
    """Read a boolean field sent as ``True``/``False`` (or JSON)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ('true', '1', 'yes', 'on')


def category_code(value):
    """The code (``P``, ``T``, ``M``) of a superevent category given by
    code or name; 400 for others."""
    for code, name in CATEGORIES.items():
        if str(value).lower() in (code.lower(), name.lower()):
            return code
    raise bad_request(f'category: "{value}" is not a valid choice.')
