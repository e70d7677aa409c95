"""The staff web view (issue 17): server-rendered pages over the same services as the CLI."""
