"""Amaranth components of the ILMPQ accelerator.

May import golden's enums and width constants (:mod:`ilmpq.golden.formats`), never its
arithmetic.
"""
