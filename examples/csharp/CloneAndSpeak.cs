// CloneAndSpeak.cs: clone a voice from a reference recording and its transcript, speak a
// sentence in it (streaming the audio through a handler), and write the result as a WAV file,
// through the C# bindings (errors are exceptions; using blocks free the native objects).
//
// Build and run from the repository root (after `cargo build`; Mono: apt-get install mono-mcs):
//   mcs -out:CloneAndSpeak.exe bindings/csharp/*.cs examples/csharp/CloneAndSpeak.cs
//   LD_LIBRARY_PATH=target/debug mono CloneAndSpeak.exe [MODEL_DIR [REF.wav [REF.txt [OUT.wav [TEXT]]]]]
// The defaults use the tiny test checkpoint (its "speech" is noise; use a released Base
// checkpoint for real speech) and write clone_and_speak_cs.wav.
using System;
using System.IO;
using Qwentts;

static class CloneAndSpeak
{
    static int Main(string[] args)
    {
        string dir = args.Length > 0 ? args[0] : "tests/fixtures/tiny-base";
        string refWav = args.Length > 1 ? args[1] : "tests/fixtures/audio/ref_24k.wav";
        string refTxt = args.Length > 2 ? args[2] : "tests/fixtures/audio/ref_24k.txt";
        string outWav = args.Length > 3 ? args[3] : "clone_and_speak_cs.wav";
        string text = args.Length > 4 ? args[4] : "Hello from qwentts.";
        try
        {
            Library.RequireAbi();
            string transcript = File.ReadAllText(refTxt).TrimEnd('\r', '\n');
            using (Model model = Model.Load(dir))
            // With the transcript the clone is in-context (closest imitation); null: x-vector only.
            using (Voice voice = model.CloneVoiceFromFile(refWav, transcript))
            {
                GenerateParams p = model.DefaultGenerateParams();
                p.Language = "English";
                p.Native.Seed = 42; // reproducible; NativeMethods.QT_SEED_RANDOM for a fresh take

                // Runs on this thread with each piece of audio; a game would queue chunk.Samples
                // for playback (in Unity: an AudioClip fed from OnAudioRead).
                int chunks = 0;
                Func<Chunk, bool> onChunk = chunk =>
                {
                    if (chunk.Index == 0) Console.WriteLine("first chunk: " + chunk.Samples.Length + " samples");
                    chunks++;
                    return true; // false stops generation (the Audio is then Aborted)
                };
                using (Audio audio = model.Generate(voice, text, p, onChunk))
                {
                    audio.WriteWav(outWav);
                    Console.WriteLine("wrote " + outWav + ": " + audio.Samples.Length + " samples at " + audio.SampleRate +
                                      " Hz in " + chunks + " chunks, " + audio.Frames + " frames, ended by " +
                                      (audio.Finish == NativeMethods.QT_FINISH_EOS ? "end of speech" : "the frame limit"));
                }
            } // Dispose frees the audio, the voice and the model, in that order
            return 0;
        }
        catch (QwenttsException e)
        {
            Console.Error.WriteLine(e.Message); // "QT_STATUS_NOT_FOUND: qt_load: ..."
            return 1;
        }
        catch (IOException e)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }
    }
}
