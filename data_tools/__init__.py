"""Face data formats (RecordIO, emore layout, .bin pairs, alignment, demo data); no torch inside."""
