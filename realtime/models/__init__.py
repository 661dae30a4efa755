"""Generator families. Each module registers its family and presets on import; add a family with one line here."""

from . import animegan_v2, cut_resnet, nijigan  # noqa: F401  (imported for their registrations)
