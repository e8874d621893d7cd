"""Interoperability with spacy-transformers: `spacy-albert.TransformerModel.v1` (a drop-in for
`spacy-transformers.TransformerModel.v3`), its alignments, and the migration of trained
spacy-transformers pipelines (`python -m spacy_albert migrate`)."""
