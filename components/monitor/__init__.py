"""The monitor component (monitoring: drift, data quality, fresh-label accuracy, age -> decision)."""
