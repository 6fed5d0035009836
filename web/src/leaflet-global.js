// leaflet.markercluster attaches itself to a global L; this module runs before it.
import L from "leaflet";

window.L = L;
export default L;
