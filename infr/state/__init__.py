"""Local state: the config, inventory and secrets in a reviewable, git-tracked directory."""
