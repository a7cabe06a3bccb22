"""Corpora: the registry (`corpora`), download (`fetch`), text preparation (`prepare`),
vocabulary and integer encoding (`encode`), and tiny generated archives (`tiny`)."""
