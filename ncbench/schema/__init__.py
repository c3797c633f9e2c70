"""JSON Schemas published by ncbench: ``result.schema.json`` describes a result file (and a submission)."""
