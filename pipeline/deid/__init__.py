"""De-identification of the header: PS3.15 Annex E profile as data, the de-identifier, keyed pseudonyms."""
