"""A tiny WBXML 1.3 codec for the few ActiveSync code pages these tests use
(standard library only).

encode(tree) -> bytes, decode(bytes) -> tree, where a tree is
(name, children) and children is either a str (text content), bytes (opaque
data) or a list of trees. Names are "Page:Tag" (e.g. "FolderHierarchy:
FolderSync"); a tag of a page this module does not know decodes as
"cpN:0xTT" so that a response never fails to decode.

Code pages and tokens are those of [MS-ASWBXML] 2.1.2.1.
"""

PAGES = {
    0: ("AirSync", {
        0x05: "Sync", 0x06: "Responses", 0x07: "Add", 0x08: "Change",
        0x09: "Delete", 0x0A: "Fetch", 0x0B: "SyncKey", 0x0C: "ClientId",
        0x0D: "ServerId", 0x0E: "Status", 0x0F: "Collection",
        0x10: "Class", 0x12: "CollectionId", 0x13: "GetChanges",
        0x14: "MoreAvailable", 0x15: "WindowSize", 0x16: "Commands",
        0x17: "Options", 0x18: "FilterType", 0x1B: "Conflict",
        0x1C: "Collections", 0x1D: "ApplicationData",
        0x1E: "DeletesAsMoves", 0x20: "Supported", 0x21: "SoftDelete",
        0x22: "MIMESupport", 0x23: "MIMETruncation", 0x24: "Wait",
        0x25: "Limit", 0x26: "Partial"}),
    7: ("FolderHierarchy", {
        0x07: "DisplayName", 0x08: "ServerId", 0x09: "ParentId",
        0x0A: "Type", 0x0C: "Status", 0x0E: "Changes", 0x0F: "Add",
        0x10: "Delete", 0x11: "Update", 0x12: "SyncKey",
        0x13: "FolderCreate", 0x14: "FolderDelete", 0x15: "FolderUpdate",
        0x16: "FolderSync", 0x17: "Count"}),
    13: ("Ping", {
        0x05: "Ping", 0x06: "AutdState", 0x07: "Status",
        0x08: "HeartbeatInterval", 0x09: "Folders", 0x0A: "Folder",
        0x0B: "Id", 0x0C: "Class", 0x0D: "MaxFolders"}),
    14: ("Provision", {
        0x05: "Provision", 0x06: "Policies", 0x07: "Policy",
        0x08: "PolicyType", 0x09: "PolicyKey", 0x0A: "Data",
        0x0B: "Status", 0x0C: "RemoteWipe", 0x0D: "EASProvisionDoc"}),
    18: ("Settings", {
        0x05: "Settings", 0x06: "Status", 0x07: "Get", 0x08: "Set",
        0x16: "DeviceInformation", 0x17: "Model", 0x18: "IMEI",
        0x19: "FriendlyName", 0x1A: "OS", 0x1B: "OSLanguage",
        0x1C: "PhoneNumber", 0x20: "UserAgent"}),
}

_BY_NAME = {}
for _cp, (_page, _tags) in PAGES.items():
    for _tok, _tag in _tags.items():
        _BY_NAME["%s:%s" % (_page, _tag)] = (_cp, _tok)

SWITCH_PAGE, END, ENTITY, STR_I, LITERAL = 0x00, 0x01, 0x02, 0x03, 0x04
STR_T, OPAQUE = 0x83, 0xC3
HEADER = bytes([0x03, 0x01, 0x6A, 0x00])  # WBXML 1.3, unknown id, UTF-8


def _mb_u_int32(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def encode(tree):
    """tree: (name, content) with content a str, bytes, list of trees, or
    None (an empty element)."""
    out = bytearray(HEADER)
    page = [0]

    def emit(node):
        name, content = node
        if name not in _BY_NAME:
            raise ValueError("unknown WBXML tag %r" % name)
        cp, tok = _BY_NAME[name]
        if cp != page[0]:
            out.extend((SWITCH_PAGE, cp))
            page[0] = cp
        if content is None or content == [] or content == "":
            out.append(tok)
            return
        out.append(tok | 0x40)
        if isinstance(content, str):
            out.append(STR_I)
            out.extend(content.encode("utf-8"))
            out.append(0)
        elif isinstance(content, (bytes, bytearray)):
            out.append(OPAQUE)
            out.extend(_mb_u_int32(len(content)))
            out.extend(content)
        else:
            for child in content:
                emit(child)
        out.append(END)

    emit(tree)
    return bytes(out)


class WbxmlError(ValueError):
    pass


def decode(data):
    """Returns the root (name, children) of a WBXML document."""
    data = bytes(data)
    pos = [0]

    def byte():
        if pos[0] >= len(data):
            raise WbxmlError("truncated WBXML at offset %d" % pos[0])
        b = data[pos[0]]
        pos[0] += 1
        return b

    def mb():
        n = 0
        for _ in range(5):
            b = byte()
            n = (n << 7) | (b & 0x7F)
            if not b & 0x80:
                return n
        raise WbxmlError("mb_u_int32 too long")

    def cstr():
        end = data.find(b"\0", pos[0])
        if end < 0:
            raise WbxmlError("unterminated inline string")
        s = data[pos[0]:end].decode("utf-8", "replace")
        pos[0] = end + 1
        return s

    byte()                      # version
    if mb() == 0:               # public id 0: an index into the string table
        mb()
    mb()                        # charset
    strtab_len = mb()
    strtab = data[pos[0]:pos[0] + strtab_len]
    pos[0] += strtab_len

    def tstr():
        off = mb()
        end = strtab.find(b"\0", off)
        return strtab[off:end if end >= 0 else None].decode("utf-8", "replace")

    page = [0]

    def element(tok):
        cp = page[0]
        page_name, tags = PAGES.get(cp, ("cp%d" % cp, {}))
        base = tok & 0x3F
        name = "%s:%s" % (page_name, tags.get(base, "0x%02X" % base))
        if tok & 0x80:
            raise WbxmlError("attributes are not used by ActiveSync")
        if not tok & 0x40:
            return (name, [])
        children, text, opaque = [], [], None
        while True:
            b = byte()
            if b == SWITCH_PAGE:
                page[0] = byte()
            elif b == END:
                break
            elif b == STR_I:
                text.append(cstr())
            elif b == STR_T:
                text.append(tstr())
            elif b == ENTITY:
                text.append(chr(mb()))
            elif b == OPAQUE:
                n = mb()
                opaque = data[pos[0]:pos[0] + n]
                pos[0] += n
            else:
                children.append(element(b))
        if children:
            return (name, children)
        if opaque is not None and not text:
            return (name, opaque)
        return (name, "".join(text))

    while True:
        b = byte()
        if b == SWITCH_PAGE:
            page[0] = byte()
            continue
        root = element(b)
        return root


def find_all(tree, name):
    """Every element named name (full "Page:Tag" or bare "Tag") in tree."""
    found = []

    def walk(node):
        n, content = node
        if n == name or n.split(":", 1)[-1] == name:
            found.append(node)
        if isinstance(content, list):
            for c in content:
                walk(c)

    walk(tree)
    return found


def text_of(tree, name, default=None):
    """Text of the first element named name, or default."""
    hits = find_all(tree, name)
    if not hits or not isinstance(hits[0][1], str):
        return default
    return hits[0][1]


def to_xml(tree, indent=0):
    """A readable rendering for failure messages."""
    name, content = tree
    pad = "  " * indent
    if isinstance(content, list):
        if not content:
            return "%s<%s/>\n" % (pad, name)
        inner = "".join(to_xml(c, indent + 1) for c in content)
        return "%s<%s>\n%s%s</%s>\n" % (pad, name, inner, pad, name)
    if isinstance(content, bytes):
        return "%s<%s>[%d opaque bytes]</%s>\n" % (pad, name, len(content),
                                                   name)
    return "%s<%s>%s</%s>\n" % (pad, name, content, name)
