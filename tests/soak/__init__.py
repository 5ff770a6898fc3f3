"""``make soak``: the long fault campaigns kept out of CI (issue #13). One ``campaign_*.py`` module per campaign."""
