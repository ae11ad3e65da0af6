"""Circuits that travel: a resolved circuit as plain JSON (``circuitspec export``), that JSON back as a
``.circ`` skeleton (``circuitspec import``), and the edge list in EAP-IG's graph format (:mod:`.eap`)."""
