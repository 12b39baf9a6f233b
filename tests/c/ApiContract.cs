// ApiContract.cs: the C# bindings' contract, run by tests/c_consumers.rs:
//   mcs -out:ApiContract.exe bindings/csharp/*.cs tests/c/ApiContract.cs
//   LD_LIBRARY_PATH=target/debug/deps mono ApiContract.exe tests/fixtures/tiny-base \
//       tests/fixtures/tiny-customvoice tests/fixtures/audio/ref_24k.wav
// Checks struct mirrors against the library, exceptions carrying status and detail, SafeHandle
// release, the log handler, and voices and generation: handlers that stop or throw, voice
// round trips, voices of another model. Prints "ApiContract: N checks passed" or the failures
// (exit 1).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using Qwentts;

static class ApiContract
{
    static int checks, failures;

    static void Check(bool ok, string what)
    {
        checks++;
        if (!ok) { failures++; Console.Error.WriteLine("CHECK failed: " + what); }
    }

    static QwenttsException Throws(Action action)
    {
        try { action(); }
        catch (QwenttsException e) { return e; }
        return null;
    }

    static int Main(string[] args)
    {
        string dir = args.Length > 0 ? args[0] : "tests/fixtures/tiny-base";
        Library.RequireAbi();
        Check(Library.BuildInfo.StartsWith("qwentts " + Library.Version), "build info names the version");
        Check(Library.DeviceCount() == 0, "no CUDA devices in this build: " + Library.DeviceCount());

        // Every status the bindings mirror has its own name in the library.
        var statuses = new Dictionary<int, string> {
            { NativeMethods.QT_STATUS_NO_CUDA_DRIVER, "QT_STATUS_NO_CUDA_DRIVER" },
            { NativeMethods.QT_STATUS_NO_DEVICE, "QT_STATUS_NO_DEVICE" },
            { NativeMethods.QT_STATUS_OUT_OF_MEMORY, "QT_STATUS_OUT_OF_MEMORY" },
            { NativeMethods.QT_STATUS_CUDA, "QT_STATUS_CUDA" },
        };
        foreach (var pair in statuses)
            Check(Status.Describe(pair.Key).StartsWith(pair.Value + ": "), "status text of " + pair.Value);
        QwenttsException cuda = Status.Error("qt_test", NativeMethods.QT_STATUS_CUDA);
        Check(cuda.Status == NativeMethods.QT_STATUS_CUDA && cuda.StatusName == "QT_STATUS_CUDA", "CUDA status exception");

        // Mirrors: the library fills exactly our struct (a mismatch would change StructSize or garble fields).
        ModelParams p = ModelParams.Create();
        Check(p.StructSize == Marshal.SizeOf(typeof(ModelParams)) && p.Device == NativeMethods.QT_DEVICE_CPU, "params defaults");

        // Failures arrive as exceptions with the status and the library's detail.
        QwenttsException e = Throws(() => Model.Load("/nonexistent/qwentts-model"));
        Check(e != null && e.Status == NativeMethods.QT_STATUS_NOT_FOUND, "missing dir -> NOT_FOUND");
        Check(e != null && e.StatusName == "QT_STATUS_NOT_FOUND" && e.Message.Contains("/nonexistent/qwentts-model"), "message: " + (e == null ? "" : e.Message));
        e = Throws(() => Model.Load(dir, 0));
        Check(e != null && e.Status == NativeMethods.QT_STATUS_UNSUPPORTED && e.Message.Contains("CUDA"), "CUDA device -> UNSUPPORTED");
        e = Throws(() => Library.SetLogLevel(42));
        Check(e != null && e.Status == NativeMethods.QT_STATUS_INVALID_ARGUMENT, "bad log level -> INVALID_ARGUMENT");

        var messages = new List<string>();
        Library.SetLogHandler((level, message) => { lock (messages) messages.Add(level + " " + message); });

        Model model = Model.Load(dir);
        ModelInfo info = model.GetInfo();
        Check(info.StructSize == Marshal.SizeOf(typeof(ModelInfoNative)), "qt_model_info mirror size " + info.StructSize);
        Check(info.Kind == NativeMethods.QT_MODEL_BASE && info.CanClone && info.Device == NativeMethods.QT_DEVICE_CPU, "kind");
        Check(info.SampleRate == 24000 && info.FrameRate == 12.5f && info.Codebooks == 16, "rates");
        Check(info.Languages.Length > 0 && info.Languages[0] == "auto" && info.Speakers.Length == 0, "names");
        Check(info.TensorCount > 0 && info.WeightBytes > 0 && info.SizeLabel.Length > 0, "weights");

        // The handle frees once: Dispose twice is fine, and the handle is then closed.
        ModelHandle handle = model.Handle;
        model.Dispose();
        model.Dispose();
        Check(handle.IsClosed, "Dispose closes the handle");
        bool disposed = false;
        try { model.GetInfo(); } catch (ObjectDisposedException) { disposed = true; }
        Check(disposed, "a disposed model is refused by the SafeHandle, never passed to C");
        lock (messages) Check(messages.Count == 0, "no warnings from a clean lifecycle: " + string.Join(" | ", messages));

        // A pointer the library does not own: reported through the log handler, nothing freed.
        IntPtr foreign = Marshal.AllocHGlobal(64);
        NativeMethods.qt_free(foreign);
        Marshal.FreeHGlobal(foreign);
        lock (messages) Check(messages.Count == 1 && messages[0].StartsWith(NativeMethods.QT_LOG_WARN + " qt_free:"), "log handler got the warning");
        Library.SetLogHandler(null);

        if (args.Length > 2) Generation(dir, args[1], args[2]);
        if (args.Length > 3) Design(dir, args[3]);

        if (failures > 0) { Console.Error.WriteLine("ApiContract: " + failures + " of " + checks + " checks failed"); return 1; }
        Console.WriteLine("ApiContract: " + checks + " checks passed");
        return 0;
    }

    static void Generation(string dir, string customDir, string refWav)
    {
        int structSize = Marshal.SizeOf(typeof(GenParamsNative));
        using (Model model = Model.Load(dir))
        using (Model custom = Model.Load(customDir))
        using (Voice voice = model.CloneVoiceFromFile(refWav, "Okay. Yeah. This is my reference voice."))
        {
            // Mirrors: the library fills exactly our structs.
            GenerateParams p = model.DefaultGenerateParams();
            Check(p.Native.StructSize == structSize, "qt_gen_params mirror size " + p.Native.StructSize + " vs " + structSize);
            Check(p.Native.Seed == NativeMethods.QT_SEED_RANDOM && p.Native.DoSample == 1 && p.Native.TopK == 50 && p.Native.FirstChunkFrames == 1 && p.Native.Reserved == 0, "gen defaults");
            Check(CloneParams.Create().StructSize == Marshal.SizeOf(typeof(CloneParams)), "qt_clone_params mirror size");
            VoiceInfo vi = voice.GetInfo();
            Check(vi.StructSize == Marshal.SizeOf(typeof(VoiceInfoNative)), "qt_voice_info mirror size " + vi.StructSize);
            Check(vi.Kind == NativeMethods.QT_VOICE_ICL && vi.RefFrames == 39 && vi.EmbeddingDim == 32, "cloned ICL voice");
            Check(vi.RefText == "Okay. Yeah. This is my reference voice." && vi.Speaker == null && vi.Description == null, "voice strings");

            // Generation with a handler: chunks in order, the audio is their concatenation.
            p.Language = "English";
            p.Native.Seed = 7;
            p.Native.MaxFrames = 6;
            p.Native.ChunkFrames = 2;
            var streamed = new List<float>();
            int lastChunks = 0;
            using (Audio audio = model.Generate(voice, "Hello there.", p, c =>
            {
                Check(c.StructSize == Marshal.SizeOf(typeof(ChunkNative)), "qt_chunk mirror size " + c.StructSize);
                Check(c.FirstSample == streamed.Count, "chunk " + c.Index + " contiguous");
                streamed.AddRange(c.Samples);
                if (c.IsLast) lastChunks++;
                return true;
            }))
            {
                Check(audio.Info.StructSize == Marshal.SizeOf(typeof(AudioInfoNative)), "qt_audio_info mirror size " + audio.Info.StructSize);
                Check(audio.SampleRate == 24000 && audio.Frames > 0 && audio.Frames <= 6 && !audio.Aborted, "audio info");
                Check(lastChunks == 1 && streamed.Count == audio.Samples.Length, "chunks cover the audio");
                bool same = true;
                for (int i = 0; i < streamed.Count && same; i++) same = streamed[i] == audio.Samples[i];
                Check(same, "chunk samples equal the audio");
            }

            // A handler that says stop, an abort hook, a handler that throws.
            p.Native.MaxFrames = 12;
            using (Audio stopped = model.Generate(voice, "Hello there.", p, c => false))
                Check(stopped.Aborted && stopped.Finish == NativeMethods.QT_FINISH_ABORTED, "handler returning false aborts");
            int polls = 0;
            int layers = model.GetInfo().TalkerLayers;
            GenerateParams hooked = model.DefaultGenerateParams();
            hooked.Native.MaxFrames = 12;
            hooked.Language = "English"; // the voice prefix of the calls above is reused: one prefill pass
            hooked.ShouldAbort = () => ++polls >= layers + 2;
            using (Audio stopped = model.Generate(voice, "Hello there.", hooked, null))
                // Poll 1 comes before the prefill, one after each of its layers, then one after each frame.
                Check(stopped.Aborted && stopped.Frames == 1 && polls == layers + 2, "ShouldAbort stops after the first frame: " + stopped.Frames);
            bool rethrown = false;
            try { model.Generate(voice, "Hello there.", p, c => { throw new InvalidTimeZoneException("from the handler"); }); }
            catch (InvalidTimeZoneException e) { rethrown = e.Message == "from the handler"; }
            Check(rethrown, "an exception in the chunk handler is rethrown by Generate");
            hooked.ShouldAbort = () => { throw new ArithmeticException("from the hook"); };
            rethrown = false;
            try { model.Generate(voice, "Hello there.", hooked, null); }
            catch (ArithmeticException) { rethrown = true; }
            Check(rethrown, "an exception in ShouldAbort is rethrown by Generate");

            // Bad input arrives as exceptions with the status.
            GenerateParams bad = model.DefaultGenerateParams();
            bad.Native.DoSample = 3;
            QwenttsException e2 = Throws(() => model.Generate(voice, "Hi.", bad, null));
            Check(e2 != null && e2.Status == NativeMethods.QT_STATUS_INVALID_ARGUMENT && e2.Message.Contains("do_sample"), "bad do_sample");
            bad = model.DefaultGenerateParams();
            bad.Language = "klingon";
            e2 = Throws(() => model.Generate(voice, "Hi.", bad, null));
            Check(e2 != null && e2.Status == NativeMethods.QT_STATUS_INVALID_ARGUMENT, "unknown language");
            e2 = Throws(() => custom.Generate(voice, "Hi."));
            Check(e2 != null && e2.Status == NativeMethods.QT_STATUS_VOICE_MISMATCH, "voice of another model family");
            e2 = Throws(() => model.VoiceFromSpeaker("ryan"));
            Check(e2 != null && e2.Status == NativeMethods.QT_STATUS_UNSUPPORTED, "no speakers on Base");
            e2 = Throws(() => model.CloneVoiceFromFile("/nonexistent/ref.wav", null));
            Check(e2 != null && e2.Status == NativeMethods.QT_STATUS_NOT_FOUND, "missing reference");
            e2 = Throws(() => model.CloneVoice(new float[100], 1, 24000, null));
            Check(e2 != null && e2.Status == NativeMethods.QT_STATUS_INVALID_ARGUMENT, "too short reference");

            // Voices round trip: bytes, x-vector, built-in speakers.
            byte[] bytes = voice.Serialize();
            using (Voice back = model.DeserializeVoice(bytes))
            {
                byte[] again = back.Serialize();
                Check(again.Length == bytes.Length, "serialized voice round trip");
            }
            bytes[bytes.Length / 2] ^= 0x11;
            e2 = Throws(() => model.DeserializeVoice(bytes));
            Check(e2 != null && e2.Status == NativeMethods.QT_STATUS_BAD_VOICE, "corrupt voice bytes");
            float[] xvec = voice.GetEmbedding();
            using (Voice x = model.VoiceFromEmbedding(xvec))
            {
                Check(x.GetInfo().Kind == NativeMethods.QT_VOICE_XVECTOR && x.GetEmbedding().Length == 32, "x-vector voice");
            }
            // A stream read the way an audio callback would: what it hands out is Generate's audio
            // (from its chunk offset) for the same seed.
            GenerateParams sp = model.DefaultGenerateParams();
            sp.Language = "English";
            sp.Native.Seed = 5;
            sp.Native.MaxFrames = 6;
            float[] whole;
            int offset;
            using (Audio a = model.Generate(voice, "Hello there.", sp, null))
            {
                whole = a.Samples;
                offset = a.Info.ChunkOffset;
            }
            var heard = new List<float>();
            using (SpeechStream stream = SpeechStream.Start(model, voice, "Hello there.", sp, 1024))
            {
                var buffer = new float[256];
                bool ended = false;
                for (int i = 0; i < 200000 && !ended; ++i)
                {
                    int n = stream.Read(buffer, buffer.Length, out ended);
                    for (int j = 0; j < n; ++j) heard.Add(buffer[j]);
                    if (n == 0 && !ended) System.Threading.Thread.Sleep(1);
                }
                StreamInfoNative si = stream.GetInfo();
                Check(ended && si.State == NativeMethods.QT_STREAM_FINISHED && stream.CheckResult() == NativeMethods.QT_STATUS_OK, "stream finished");
                Check(si.StructSize == Marshal.SizeOf(typeof(StreamInfoNative)), "qt_stream_info mirror size " + si.StructSize);
            }
            bool streamedSame = heard.Count == whole.Length - offset;
            for (int j = 0; streamedSame && j < heard.Count; ++j) streamedSame = heard[j] == whole[offset + j];
            Check(streamedSame, "streamed samples equal Generate's (" + heard.Count + " vs " + (whole.Length - offset) + ")");
            QwenttsException es = Throws(() => SpeechStream.Start(model, voice, "Hi.", sp, 3));
            Check(es != null && es.Status == NativeMethods.QT_STATUS_INVALID_ARGUMENT && es.Message.Contains("capacity"), "tiny stream ring refused");

            using (Voice ryan = custom.VoiceFromSpeaker("Ryan"))
            {
                Check(ryan.GetInfo().Kind == NativeMethods.QT_VOICE_SPEAKER, "built-in speaker");
                GenerateParams q = custom.DefaultGenerateParams();
                q.Native.MaxFrames = 3;
                using (Audio a = custom.Generate(ryan, "Hi.", q, null))
                    Check(a.Frames > 0, "a built-in speaker speaks");
            }
        }
    }

    // Voices described in words: only a VoiceDesign model makes one, and it speaks there.
    static void Design(string baseDir, string designDir)
    {
        using (Model model = Model.Load(baseDir))
        using (Model design = Model.Load(designDir))
        {
            Check(design.GetInfo().Kind == NativeMethods.QT_MODEL_VOICE_DESIGN, "VoiceDesign model kind");
            QwenttsException e = Throws(() => model.VoiceFromDescription("A calm voice."));
            Check(e != null && e.Status == NativeMethods.QT_STATUS_UNSUPPORTED && e.Message.Contains("VoiceDesign"), "no descriptions on Base");
            using (Voice calm = design.VoiceFromDescription("A calm voice, \u00e9l\u00e9gante."))
            {
                VoiceInfo vi = calm.GetInfo();
                Check(vi.Kind == NativeMethods.QT_VOICE_DESIGN && vi.Description == "A calm voice, \u00e9l\u00e9gante." && vi.Speaker == null, "designed voice info");
                GenerateParams q = design.DefaultGenerateParams();
                q.Native.MaxFrames = 3;
                using (Audio a = design.Generate(calm, "Hi.", q, null))
                    Check(a.Frames > 0, "a designed voice speaks");
            }
        }
    }
}
