"""The live view: gradcam-live's command line, the session it builds, and the loop that runs it."""
