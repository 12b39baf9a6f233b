// SpeechPlayerTest.cs: examples/csharp/SpeechPlayer.cs driven the way Unity drives
// OnAudioFilterRead (stereo, 1024 frames at 48 kHz, every 21.3 ms, from another thread): the
// left and right channels each carry exactly Generate's streamed audio, in order, with
// silence only where none was ready. Args: MODEL_DIR REF.wav
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using Qwentts;

static class SpeechPlayerTest
{
    static int Main(string[] args)
    {
        using (Model model = Model.Load(args[0]))
        using (Voice voice = model.CloneVoiceFromFile(args[1], null))
        {
            GenerateParams p = model.DefaultGenerateParams();
            p.Language = "English";
            p.Native.Seed = 11;
            p.Native.MaxFrames = 10;
            p.Native.OutputSampleRate = 48000;
            float[] whole;
            int offset;
            using (Audio a = model.Generate(voice, "Hello from Unity.", p, null))
            {
                whole = a.Samples;
                offset = a.Info.ChunkOffset;
            }
            const int Frames = 1024, Channels = 2;
            var heard = new List<float>();
            int mismatched = 0, callbacks = 0;
            double slowestMs = 0;
            var audioThread = new Thread(() =>
            {
                using (var player = new SpeechPlayer(SpeechStream.Start(model, voice, "Hello from Unity.", p, 24000), Frames))
                {
                    var data = new float[Frames * Channels];
                    var clock = Stopwatch.StartNew();
                    double period = 1000.0 * Frames / 48000;
                    while (!player.Ended && callbacks < 100000)
                    {
                        var t0 = clock.Elapsed.TotalMilliseconds;
                        int n = player.Fill(data, Channels);
                        slowestMs = Math.Max(slowestMs, clock.Elapsed.TotalMilliseconds - t0);
                        for (int i = 0; i < Frames; ++i)
                        {
                            if (data[2 * i] != data[2 * i + 1]) mismatched++;
                            if (i < n) heard.Add(data[2 * i]);
                            else if (data[2 * i] != 0) mismatched++;
                        }
                        callbacks++;
                        double next = callbacks * period;
                        double wait = next - clock.Elapsed.TotalMilliseconds;
                        if (wait > 0) Thread.Sleep((int)wait);
                    }
                }
            });
            audioThread.Start();
            audioThread.Join();
            bool same = heard.Count == whole.Length - offset && mismatched == 0;
            for (int i = 0; same && i < heard.Count; ++i) same = heard[i] == whole[offset + i];
            Console.WriteLine("SpeechPlayerTest: " + callbacks + " callbacks, " + heard.Count + " frames of speech, slowest fill "
                + slowestMs.ToString("0.000") + " ms");
            if (!same)
            {
                Console.Error.WriteLine("SpeechPlayerTest: heard " + heard.Count + " frames, Generate made " + (whole.Length - offset)
                    + "; " + mismatched + " channel/silence mismatches");
                return 1;
            }
            Console.WriteLine("SpeechPlayerTest: passed");
            return 0;
        }
    }
}
