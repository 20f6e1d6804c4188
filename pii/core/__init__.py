"""The core: what a subject, a finding, a selection, a policy and a column's kind are, and how text is
normalised, classified and searched (Presidio recognizers). Reads no store and no network; config,
policy and retention read their own YAML files. Connectors import only this layer.
"""
