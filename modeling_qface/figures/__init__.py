"""Pictures of results: faces drawn on photos, pose axes, attention maps and stage-usage charts (`drawing`), and the
HTML report of a run (`report`)."""
