"""Outputs: where presented frames go (a window, recordings, stills, the browser view), behind one small
interface, and the presenter's controls that come back from them."""
