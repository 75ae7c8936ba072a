// One composition, "Main", sized and timed by the timeline gpuq passes as input props.
import React from 'react';
import {AbsoluteFill, Composition, useCurrentFrame} from 'remotion';

type Timeline = {width: number; height: number; fps: number; durationInFrames: number;
                 subtitles?: {text: string; from: number; to: number}[]};

const Video: React.FC<Timeline> = ({subtitles = []}) => {
  const frame = useCurrentFrame();
  const line = subtitles.find((s) => frame >= s.from && frame < s.to);
  return (
    <AbsoluteFill style={{backgroundColor: '#111', color: 'white', fontSize: 64,
                          justifyContent: 'center', alignItems: 'center'}}>
      {line ? line.text : ''}
    </AbsoluteFill>
  );
};

export const Root: React.FC = () => (
  <Composition id="Main" component={Video} width={1080} height={1920} fps={30}
               durationInFrames={90}
               defaultProps={{width: 1080, height: 1920, fps: 30, durationInFrames: 90}}
               calculateMetadata={({props}) => ({width: props.width, height: props.height,
                                                 fps: props.fps,
                                                 durationInFrames: props.durationInFrames})} />
);
