// The demo's Remotion project entry. The demo renders with build/gpuq-fake-remotion, a
// stand-in that checks this file exists; for real renders run
// `npm i --save-exact remotion @remotion/cli react react-dom` here and drop remotion_bin
// from the task type.
import {registerRoot} from 'remotion';
import {Root} from './Root';

registerRoot(Root);
