"""Documentation assets and the script that re-takes the Temporal UI screenshots."""
