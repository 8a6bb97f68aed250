"""`rescore-sidecar ab`: A/B tests from the impression/feedback log (report) and their sensitivity (simulate)."""
