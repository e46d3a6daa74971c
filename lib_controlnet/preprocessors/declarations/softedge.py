"""Soft edges from HED (ControlNetHED.pth) and PiDiNet (table5_pidinet.pth), the scribbles made from them and
T2I-Adapter's PiDiNet sketch, with the reference's names and labels."""

from ..declaration import Preprocessor

HED_FILE = "ControlNetHED.pth"
PIDINET_FILE = "table5_pidinet.pth"


def _hed(safe: bool):
    def run(image, p):
        from annotator.neural.softedge import softedge_hed

        return softedge_hed(image, p.resolution, safe=safe)

    return run


def _pidinet(safe: bool):
    def run(image, p):
        from annotator.neural.softedge import softedge_pidinet

        return softedge_pidinet(image, p.resolution, safe=safe)

    return run


def _scribble_hed(image, p):
    from annotator.neural.softedge import scribble_hed

    return scribble_hed(image, p.resolution)


def _scribble_pidinet(image, p):
    from annotator.neural.softedge import scribble_pidinet

    return scribble_pidinet(image, p.resolution)


def _sketch_pidinet(image, p):
    from annotator.neural.softedge import sketch_pidinet

    return sketch_pidinet(image, p.resolution)


SCRIBBLE_TAGS = ("Scribble", "SparseCtrl")

PREPROCESSORS = (
    Preprocessor(name="hed", label="softedge_hed", run=_hed(False), tags=("SoftEdge",), weight_file=HED_FILE),
    Preprocessor(name="hed_safe", label="softedge_hedsafe", run=_hed(True), tags=("SoftEdge",),
                 weight_file=HED_FILE),
    Preprocessor(name="scribble_hed", run=_scribble_hed, tags=SCRIBBLE_TAGS, weight_file=HED_FILE),
    Preprocessor(name="pidinet", label="softedge_pidinet", run=_pidinet(False), tags=("SoftEdge",), priority=100,
                 weight_file=PIDINET_FILE),
    Preprocessor(name="pidinet_safe", label="softedge_pidisafe", run=_pidinet(True), tags=("SoftEdge",),
                 weight_file=PIDINET_FILE),
    Preprocessor(name="pidinet_scribble", label="scribble_pidinet", run=_scribble_pidinet, tags=SCRIBBLE_TAGS,
                 priority=100, weight_file=PIDINET_FILE),
    Preprocessor(name="pidinet_sketch", label="t2ia_sketch_pidi", run=_sketch_pidinet, tags=("T2I-Adapter",),
                 weight_file=PIDINET_FILE),
)
