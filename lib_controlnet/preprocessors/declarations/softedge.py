"""Soft edges from HED (ControlNetHED.pth) and PiDiNet (table5_pidinet.pth), the scribbles made from them and
T2I-Adapter's PiDiNet sketch, with the reference's names and labels."""

from ..declaration import Preprocessor, neural

HED_FILE = "ControlNetHED.pth"
PIDINET_FILE = "table5_pidinet.pth"
SCRIBBLE_TAGS = ("Scribble", "SparseCtrl")

PREPROCESSORS = (
    Preprocessor(name="hed", label="softedge_hed", run=neural("softedge", "softedge_hed", safe=False),
                 tags=("SoftEdge",), weight_file=HED_FILE),
    Preprocessor(name="hed_safe", label="softedge_hedsafe", run=neural("softedge", "softedge_hed", safe=True),
                 tags=("SoftEdge",), weight_file=HED_FILE),
    Preprocessor(name="scribble_hed", run=neural("softedge", "scribble_hed"), tags=SCRIBBLE_TAGS,
                 weight_file=HED_FILE),
    Preprocessor(name="pidinet", label="softedge_pidinet", run=neural("softedge", "softedge_pidinet", safe=False),
                 tags=("SoftEdge",), priority=100, weight_file=PIDINET_FILE),
    Preprocessor(name="pidinet_safe", label="softedge_pidisafe",
                 run=neural("softedge", "softedge_pidinet", safe=True), tags=("SoftEdge",),
                 weight_file=PIDINET_FILE),
    Preprocessor(name="pidinet_scribble", label="scribble_pidinet", run=neural("softedge", "scribble_pidinet"),
                 tags=SCRIBBLE_TAGS, priority=100, weight_file=PIDINET_FILE),
    Preprocessor(name="pidinet_sketch", label="t2ia_sketch_pidi", run=neural("softedge", "sketch_pidinet"),
                 tags=("T2I-Adapter",), weight_file=PIDINET_FILE),
)
