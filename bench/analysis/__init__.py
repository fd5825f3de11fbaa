"""Post-hoc analyses of finished runs (thesis chapter 5 bias analysis: `bench analyze bias`)."""
