// QwenttsSpeaker.cs: a Unity MonoBehaviour that speaks lines in a cloned voice through an
// AudioSource, streaming while they are generated (qt_stream + SpeechPlayer).
//
// Setup (not run here: no Unity in CI; the engine-independent SpeechPlayer is tested with Mono):
//   1. Build libqwentts.so (or qwentts.dll) and put it in Assets/Plugins/; copy
//      bindings/csharp/*.cs and examples/csharp/SpeechPlayer.cs into Assets/.
//   2. Add this component to a GameObject with an AudioSource (no clip needed: the audio comes
//      from OnAudioFilterRead). Set modelDirectory (a Qwen3-TTS checkpoint on disk) and
//      referenceAudio (3-10 s of the voice; referenceText its transcript, or empty).
//   3. Call Speak("...") from gameplay code. deviceIndex -1 runs on the CPU; 0 on the first GPU.
// Loading and cloning take seconds: do them at a loading screen (Awake here) or on a worker
// thread. OnAudioFilterRead runs on Unity's audio thread; SpeechPlayer.Fill never waits there.
using System;
using Qwentts;
using UnityEngine;

[RequireComponent(typeof(AudioSource))]
public class QwenttsSpeaker : MonoBehaviour
{
    public string modelDirectory = "";
    public string referenceAudio = "";
    public string referenceText = "";
    public string language = "English";
    public int deviceIndex = -1;

    Model model;
    Voice voice;
    volatile SpeechPlayer player; // swapped on the main thread, read on the audio thread
    SpeechPlayer retired;         // replaced, cancelled, freed once the audio thread moved on
    int retiredAt;
    int callbacks;                // audio callbacks so far (written by the audio thread)
    int sampleRate;

    void Awake()
    {
        sampleRate = AudioSettings.outputSampleRate;
        model = Model.Load(modelDirectory, deviceIndex);
        voice = model.CloneVoiceFromFile(referenceAudio, string.IsNullOrEmpty(referenceText) ? null : referenceText);
    }

    /// <summary>Starts speaking `line` (cutting off what was being said).</summary>
    public void Speak(string line)
    {
        GenerateParams p = model.DefaultGenerateParams();
        p.Language = language;
        p.Native.OutputSampleRate = sampleRate; // the mixer's rate: no resampling on the audio thread
        int bufferLength, buffers;
        AudioSettings.GetDSPBufferSize(out bufferLength, out buffers);
        var next = new SpeechPlayer(SpeechStream.Start(model, voice, line, p, sampleRate), bufferLength);
        SpeechPlayer previous = player;
        player = next;
        if (previous != null)
        {
            // The audio thread may be inside previous.Fill right now: stop its generation, but
            // free it only after a later callback (Update), never under the reader's feet.
            previous.Stream.Cancel();
            if (retired != null) retired.Dispose();
            retired = previous;
            retiredAt = System.Threading.Volatile.Read(ref callbacks);
        }
        AudioSource source = GetComponent<AudioSource>();
        if (!source.isPlaying) source.Play();
    }

    void Update()
    {
        // Two callbacks after the swap, the audio thread no longer holds the old player.
        if (retired != null && System.Threading.Volatile.Read(ref callbacks) - retiredAt >= 2)
        {
            retired.Dispose();
            retired = null;
        }
    }

    void OnAudioFilterRead(float[] data, int channels)
    {
        SpeechPlayer current = player;
        if (current == null) Array.Clear(data, 0, data.Length);
        else current.Fill(data, channels);
        System.Threading.Interlocked.Increment(ref callbacks);
    }

    void OnDestroy()
    {
        // Unity no longer calls OnAudioFilterRead for a destroyed component.
        SpeechPlayer current = player;
        player = null;
        if (current != null) current.Dispose();
        if (retired != null) retired.Dispose();
        if (voice != null) voice.Dispose();
        if (model != null) model.Dispose();
    }
}
