"""The materialize component: validated features into the online store."""
