"""What users touch: ``gt.fit`` (check + dispatch), the command line, JOB files, the text
report, the plot and the demo (docs/architecture.md)."""
