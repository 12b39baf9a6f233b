// SpeechPlayer.cs: feeds a SpeechStream to an engine's audio callback that wants interleaved
// multi-channel float buffers (Unity's OnAudioFilterRead(float[] data, int channels), Godot's
// AudioStreamGenerator frames, ...). Engine-independent: examples/csharp/unity/ uses it from a
// MonoBehaviour; the tests drive it with simulated callbacks under Mono.
//
// Fill never blocks and never allocates: the mono scratch buffer is made once, as large as
// the largest callback seen before (pass maxFrames to the constructor to avoid even that).
using System;

namespace Qwentts
{
    public sealed class SpeechPlayer : IDisposable
    {
        readonly SpeechStream stream;
        float[] mono;
        bool ended;

        /// <summary>Takes ownership of `stream`. maxFrames: the largest callback expected (frames
        /// per channel), so that Fill never allocates.</summary>
        public SpeechPlayer(SpeechStream stream, int maxFrames)
        {
            if (stream == null) throw new ArgumentNullException("stream");
            this.stream = stream;
            mono = new float[Math.Max(1, maxFrames)];
        }

        /// <summary>True once everything was played.</summary>
        public bool Ended { get { return ended; } }

        public SpeechStream Stream { get { return stream; } }

        /// <summary>The audio callback: fills `data` (interleaved, `channels` per frame) with the
        /// next samples on every channel, silence where none is ready. Returns the frames of
        /// speech written.</summary>
        public int Fill(float[] data, int channels)
        {
            if (data == null || channels < 1) return 0;
            int frames = data.Length / channels;
            if (frames > mono.Length) mono = new float[frames]; // only if the engine grew its buffer
            int n = 0;
            if (!ended)
            {
                bool end;
                n = stream.Read(mono, frames, out end);
                ended = end;
            }
            int k = 0;
            for (int i = 0; i < n; ++i)
                for (int c = 0; c < channels; ++c) data[k++] = mono[i];
            Array.Clear(data, k, data.Length - k);
            return n;
        }

        /// <summary>Stops the generation (if still running) and frees the stream.</summary>
        public void Dispose()
        {
            stream.Dispose();
        }
    }
}
